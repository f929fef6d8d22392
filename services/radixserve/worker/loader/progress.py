"""Quiet load progress: a few INFO lines (every ~25%), not a progress bar per tensor."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def log_progress(items: Iterable[T], total: int, desc: str) -> Iterator[T]:
    start, next_mark = time.monotonic(), 0.25
    for i, item in enumerate(items, 1):
        yield item
        if total and i / total >= next_mark:
            logger.info("%s: %d/%d (%.1fs)", desc, i, total, time.monotonic() - start)
            while next_mark <= i / total:
                next_mark += 0.25
