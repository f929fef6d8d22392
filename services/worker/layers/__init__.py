"""Plain PyTorch building blocks of the models; elementwise ops come from the ``Ops`` given.

Sampling lives in ``services.worker.sampling`` (it needs per-request state).
"""

from radixserve.services.worker.layers.activation import SiluAndMul
from radixserve.services.worker.layers.embedding import LMHead, VocabEmbedding
from radixserve.services.worker.layers.linear import (
    ColumnParallelLinear,
    MergedColumnParallelLinear,
    QKVParallelLinear,
    ReplicatedLinear,
    RowParallelLinear,
)
from radixserve.services.worker.layers.norm import RMSNorm
from radixserve.services.worker.layers.rotary import RotaryEmbedding

__all__ = [
    "ColumnParallelLinear",
    "LMHead",
    "MergedColumnParallelLinear",
    "QKVParallelLinear",
    "RMSNorm",
    "ReplicatedLinear",
    "RotaryEmbedding",
    "RowParallelLinear",
    "SiluAndMul",
    "VocabEmbedding",
]
