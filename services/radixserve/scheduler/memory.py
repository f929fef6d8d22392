"""KV memory of the scheduler: the slot allocator plus the (optional) radix cache.

Ownership: every usable slot is exactly once free (allocator), cached (a tree node's value) or
owned by a running request (``req.slots[req.cache_len:]``). ``req.slots[:req.cache_len]`` are
tree slots that the request keeps locked through ``req.last_node``.

NOTE: ordering makes early frees safe. The worker runs steps in order, so a slot freed (or cached)
while a step that writes it is still in flight can only be handed out, or read through the cache,
by a later step, which runs after that write.
"""

from __future__ import annotations

import logging

from radixserve.scheduler.allocator import KVAllocator
from radixserve.scheduler.radix_cache import RadixCache
from radixserve.scheduler.request import Request

logger = logging.getLogger(__name__)


class KVManager:
    def __init__(
        self, num_slots: int, page_size: int = 1, enable_cache: bool = True, eviction: str = "lru"
    ) -> None:
        self.allocator = KVAllocator(num_slots, page_size)
        self.page_size = page_size
        self.cache: RadixCache | None = (
            RadixCache(page_size, self.allocator.free, eviction) if enable_cache else None
        )

    @property
    def capacity(self) -> int:
        return self.allocator.capacity

    @property
    def available(self) -> int:
        return self.allocator.available

    @property
    def evictable(self) -> int:
        return self.cache.evictable_size if self.cache is not None else 0

    @property
    def cached(self) -> int:
        return self.cache.total_size if self.cache is not None else 0

    @property
    def in_use(self) -> int:
        """Slots held by running requests or locked by them in the cache."""
        return self.capacity - self.available - self.evictable

    def ensure(self, num_slots: int) -> bool:
        """Evict until ``num_slots`` slots are free; False when even that is not enough."""
        short = num_slots - self.allocator.available
        if short > 0 and self.cache is not None:
            self.cache.evict(short)
        return self.allocator.available >= num_slots

    def grow(self, req: Request, n: int) -> list[int] | None:
        """Allocate slots for ``n`` more positions of ``req`` (evicting if needed)."""
        pages = self.allocator.pages_for(req.kv_len, n)
        if not self.ensure(pages * self.page_size):
            return None
        new = self.allocator.grow(req.slots, n)
        if new is not None:
            req.slots.extend(new)
        return new

    def grow_decode(self, reqs: list[Request]) -> list[int]:
        """One more slot for each of ``reqs``; the caller made room (Scheduler._make_room)."""
        ps = self.page_size
        if ps == 1:
            new = self.allocator.alloc_pages(len(reqs))
            assert new is not None, "grow_decode: no room"
            for r, s in zip(reqs, new, strict=True):
                r.slots.append(s)
            return new
        pages = self.allocator.alloc_pages(sum(1 for r in reqs if len(r.slots) % ps == 0))
        assert pages is not None, "grow_decode: no room"
        fresh = iter(pages)
        new = []
        for r in reqs:
            slot = next(fresh) * ps if len(r.slots) % ps == 0 else r.slots[-1] + 1
            r.slots.append(slot)
            new.append(slot)
        return new

    def peek_prefix(self, req: Request) -> int:
        """Cached prefix length for ``req`` without locking or touching (for policies)."""
        if self.cache is None:
            return 0
        slots, _ = self.cache.match_prefix(self._max_prefix_key(req), req.extra_key, touch=False)
        return len(slots)

    def _max_prefix_key(self, req: Request) -> list[int]:
        # NOTE: at least one token must be computed, so that the step can sample the next one.
        return req.all_ids[: req.seq_len - 1]

    def attach_prefix(self, req: Request) -> int:
        """Match and lock ``req``'s cached prefix; its slots start the request's slot list."""
        req.slots = []
        req.cache_len = 0
        req.last_node = None
        if self.cache is None:
            return 0
        slots, node = self.cache.match_prefix(self._max_prefix_key(req), req.extra_key)
        self.cache.lock(node)
        req.slots = slots
        req.cache_len = len(slots)
        req.last_node = node
        return len(slots)

    def cache_unfinished(self, req: Request) -> None:
        """Hand a chunked request's computed pages to the tree (SGLang's cache_unfinished_req).

        Only when the tree holds exactly the request's own prefix: if another request cached the
        same tokens meanwhile, the request keeps its duplicate slots (the worker's row points at
        them and cannot be rewritten); they are freed when the request ends.
        """
        cache = self.cache
        n = req.kv_len - req.kv_len % self.page_size
        if cache is None or n <= req.cache_len or n > req.seq_len:
            return
        key = req.all_ids[:n]
        matched, _ = cache.match_prefix(key, req.extra_key, touch=False)
        if len(matched) != req.cache_len:
            return
        cache.insert(key, req.slots[:n], req.extra_key)
        _, node = cache.match_prefix(key, req.extra_key, touch=False)
        cache.lock(node)
        if req.last_node is not None:
            cache.unlock(req.last_node)
        req.last_node = node
        req.cache_len = n

    def release(self, req: Request) -> None:
        """Give back everything ``req`` holds: known-token pages go to the cache, the rest is freed.

        Positions whose token is not known yet (a result still in flight) are only freed.
        """
        cache = self.cache
        start = req.cache_len
        if cache is not None:
            n = min(req.kv_len, req.seq_len)
            n -= n % self.page_size
            if n > req.cache_len:
                already = cache.insert(req.all_ids[:n], req.slots[:n], req.extra_key)
                if already > req.cache_len:
                    self.allocator.free(req.slots[req.cache_len : already])
                start = n
            if req.last_node is not None:
                cache.unlock(req.last_node)
        self.allocator.free(req.slots[start:])
        req.slots = []
        req.cache_len = 0
        req.last_node = None

    def flush(self) -> int:
        """Evict every unlocked cache entry; return the slots freed."""
        return self.cache.evict_all() if self.cache is not None else 0
