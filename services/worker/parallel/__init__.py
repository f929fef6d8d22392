"""Tensor parallelism: the group (collectives), shapes, and launching the ranks of a worker."""

from services.worker.parallel.group import DEFAULT_TIMEOUT_S, GroupError, TPGroup
from services.worker.parallel.shapes import check_tp, kv_head_start, local_heads, vocab_shard

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GroupError",
    "TPGroup",
    "check_tp",
    "kv_head_start",
    "local_heads",
    "vocab_shard",
]
