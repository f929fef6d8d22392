"""KV slot allocator (page-aware, slot 0 reserved) and the req->token table row allocator.

Slots are handed out in whole pages: page ``p`` covers slots ``[p * ps, (p + 1) * ps)`` (``ps`` is
the page size). A request's slot list maps row positions to slots, and positions ``[k * ps,
(k + 1) * ps)`` always share one page, so any page-aligned run of a slot list can be freed by its
page starts. Page 0 holds the padding slot 0 and is never handed out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)


class KVAllocator:
    """Free list of KV pages; O(pages) alloc and free with list slicing."""

    def __init__(self, num_slots: int, page_size: int = 1) -> None:
        if page_size < 1:
            raise ValueError(f"page_size: must be >= 1, got {page_size}")
        num_pages = num_slots // page_size
        if num_pages < 2:
            raise ValueError(f"num_slots: {num_slots} slots hold no usable page of {page_size}")
        self.page_size = page_size
        self.num_pages = num_pages
        # NOTE: popped from the end, so low pages go out first; page 0 is never in the list.
        self._free: list[int] = list(range(num_pages - 1, 0, -1))

    @property
    def capacity(self) -> int:
        """Usable slots (page 0 excluded)."""
        return (self.num_pages - 1) * self.page_size

    @property
    def available(self) -> int:
        return len(self._free) * self.page_size

    @property
    def free_pages(self) -> int:
        return len(self._free)

    def pages_for(self, kv_len: int, n: int) -> int:
        """New pages needed to grow a slot list of length ``kv_len`` by ``n`` positions."""
        ps = self.page_size
        return -(-(kv_len + n) // ps) - (-(-kv_len // ps))

    def alloc_pages(self, n: int) -> list[int] | None:
        if n > len(self._free):
            return None
        if n == 0:
            return []
        pages = self._free[-n:]
        del self._free[-n:]
        return pages

    def grow(self, slots: Sequence[int], n: int) -> list[int] | None:
        """Slots for the next ``n`` positions after ``slots`` (filling its last page first)."""
        ps = self.page_size
        if ps == 1:
            return self.alloc_pages(n)
        kv_len = len(slots)
        room = min((-kv_len) % ps, n)
        pages = self.alloc_pages(-(-(n - room) // ps))
        if pages is None:
            return None
        new = [slots[-1] + 1 + i for i in range(room)] if room else []
        for p in pages:
            new.extend(range(p * ps, (p + 1) * ps))
        del new[n:]
        return new

    def free(self, slots: Sequence[int]) -> None:
        """Free the pages of a page-aligned run of a slot list (its first slot starts a page)."""
        if not slots:
            return
        ps = self.page_size
        if ps == 1:
            self._free.extend(slots)
        else:
            self._free.extend(s // ps for s in slots[::ps])

    def free_page_set(self) -> set[int]:
        """Snapshot of the free pages (for invariant checks in tests)."""
        return set(self._free)


class RowAllocator:
    """Rows ``[0, max_rows)`` of the worker's req->token table.

    A released row stays *pending* until a step carrying it in ``release_rows`` has been built.
    A pending row may also be handed out at once: a request's first step carries its sampling
    parameters, which start the worker's row over, so such a row needs no release (and must not
    get one: the worker applies ``release_rows`` after the step's forward).
    """

    def __init__(self, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows: must be >= 1, got {max_rows}")
        self.max_rows = max_rows
        self._free: list[int] = list(range(max_rows - 1, -1, -1))
        self._pending: list[int] = []

    @property
    def available(self) -> int:
        """Rows that can be handed out now."""
        return len(self._free) + len(self._pending)

    @property
    def num_pending(self) -> int:
        return len(self._pending)

    @property
    def unused(self) -> int:
        """Rows held by no request (free or waiting for their release to be sent)."""
        return len(self._free) + len(self._pending)

    def alloc(self) -> int | None:
        if self._free:
            return self._free.pop()
        return self._pending.pop() if self._pending else None

    def release(self, row: int) -> None:
        self._pending.append(row)

    def take_pending(self) -> list[int]:
        """Rows to put in the step being built; they become free once it is sent."""
        rows = self._pending
        self._pending = []
        self._free.extend(rows)
        return rows
