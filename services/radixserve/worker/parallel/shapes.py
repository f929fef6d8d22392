"""How a model's heads, FFN and vocabulary split across ``tp`` ranks (checked at start)."""

from __future__ import annotations

import logging

from radixserve.worker.model_config import ModelConfig

logger = logging.getLogger(__name__)


def check_tp(config: ModelConfig, tp: int) -> None:
    """ValueError naming both numbers when ``tp`` cannot split this model evenly."""
    if tp < 1:
        raise ValueError(f"tp must be >= 1, got {tp}")
    if tp == 1:
        return
    if config.num_heads % tp:
        raise ValueError(
            f"tensor parallel size {tp} does not divide the model's {config.num_heads} "
            "attention heads"
        )
    kv = config.num_kv_heads
    if kv % tp and tp % kv:
        raise ValueError(
            f"tensor parallel size {tp} and the model's {kv} KV heads: one must divide the "
            "other (KV heads are split, or replicated when tp > KV heads)"
        )
    if config.intermediate_size % tp:
        raise ValueError(
            f"tensor parallel size {tp} does not divide the model's intermediate size "
            f"{config.intermediate_size}"
        )


def local_heads(num_heads: int, num_kv_heads: int, tp: int) -> tuple[int, int]:
    """Query and KV heads one rank holds; KV heads are replicated when ``tp > num_kv_heads``."""
    return num_heads // tp, max(1, num_kv_heads // tp)


def kv_head_start(num_kv_heads: int, rank: int, tp: int) -> int:
    """The first KV head of ``rank``: its own slice, or the one head its query heads share."""
    if tp <= num_kv_heads:
        return rank * (num_kv_heads // tp)
    return rank * num_kv_heads // tp


def vocab_shard(vocab_size: int, rank: int, tp: int) -> tuple[int, int]:
    """``(start, rows)`` of the (padded) vocabulary slice of ``rank``: ceil(vocab / tp) rows."""
    rows = -(-vocab_size // tp)
    return rank * rows, rows
