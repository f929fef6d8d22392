"""Tensor parallelism: the group (collectives), shapes, and launching the ranks of a worker.

This package's top level imports no torch (the gRPC server imports it before the model loads);
the group is ``services.worker.parallel.group.TPGroup``.
"""

from radixserve.worker.parallel.errors import GroupError
from radixserve.worker.parallel.shapes import (
    check_tp,
    kv_head_start,
    local_heads,
    vocab_shard,
)

__all__ = ["GroupError", "check_tp", "kv_head_start", "local_heads", "vocab_shard"]
