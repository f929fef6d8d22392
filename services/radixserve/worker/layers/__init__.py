"""Plain PyTorch building blocks of the models; elementwise ops come from the ``Ops`` given.

Sampling lives in ``services.worker.sampling`` (it needs per-request state).
"""

from radixserve.worker.layers.activation import GeluAndMul, SiluAndMul, gated_activation
from radixserve.worker.layers.embedding import LMHead, VocabEmbedding
from radixserve.worker.layers.linear import (
    ColumnParallelLinear,
    MergedColumnParallelLinear,
    QKVParallelLinear,
    ReplicatedLinear,
    RowParallelLinear,
)
from radixserve.worker.layers.norm import GemmaRMSNorm, RMSNorm
from radixserve.worker.layers.rotary import RotaryEmbedding

__all__ = [
    "ColumnParallelLinear",
    "GeluAndMul",
    "GemmaRMSNorm",
    "LMHead",
    "MergedColumnParallelLinear",
    "QKVParallelLinear",
    "RMSNorm",
    "ReplicatedLinear",
    "RotaryEmbedding",
    "RowParallelLinear",
    "SiluAndMul",
    "VocabEmbedding",
    "gated_activation",
]
