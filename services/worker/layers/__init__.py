"""Plain PyTorch building blocks of the models; elementwise ops come from the ``Ops`` given.

Sampling lives in ``services.worker.sampling`` (it needs per-request state).
"""

from services.worker.layers.activation import SiluAndMul
from services.worker.layers.embedding import LMHead, VocabEmbedding
from services.worker.layers.linear import (
    ColumnParallelLinear,
    MergedColumnParallelLinear,
    QKVParallelLinear,
    ReplicatedLinear,
    RowParallelLinear,
)
from services.worker.layers.norm import RMSNorm
from services.worker.layers.rotary import RotaryEmbedding

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
