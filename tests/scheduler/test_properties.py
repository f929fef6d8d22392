"""Property tests: after any sequence of match/lock (admit), grow, insert (chunk or finish), evict
and free, every usable page is exactly once free, cached or owned, and locked prefixes stay."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from radixserve.common.types import SamplingParams
from radixserve.scheduler.memory import KVManager
from radixserve.scheduler.request import Request

TOKENS = st.lists(st.integers(1, 3), min_size=1, max_size=14)  # tiny alphabet: many shared prefixes


class KVMachine(RuleBasedStateMachine):
    @initialize(page_size=st.sampled_from([1, 2, 4]), policy=st.sampled_from(["lru", "lfu"]))
    def setup(self, page_size, policy):
        self.kv = KVManager(num_slots=64 + page_size, page_size=page_size, eviction=policy)
        self.live: list[Request] = []
        self.n = 0

    @rule(tokens=TOKENS, extra=st.sampled_from([None, "ns"]))
    def admit(self, tokens, extra):
        self.n += 1
        req = Request(str(self.n), tokens, SamplingParams(), extra_key=extra)
        self.kv.attach_prefix(req)
        assert req.cache_len % self.kv.page_size == 0 and req.cache_len < len(tokens)
        if self.kv.grow(req, req.seq_len - req.cache_len) is None:
            self.kv.release(req)
            return
        self.live.append(req)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), tok=st.integers(1, 3), compute=st.booleans())
    def decode(self, i, tok, compute):
        """A sampled token; ``compute`` also writes its KV (the next decode step)."""
        req = self.live[i % len(self.live)]
        if req.kv_len < req.seq_len and self.kv.grow(req, 1) is None:
            return
        req.output_ids.append(tok)
        if compute:
            self.kv.grow(req, 1)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99))
    def insert_unfinished(self, i):
        req = self.live[i % len(self.live)]
        if req.kv_len <= req.seq_len:
            self.kv.cache_unfinished(req)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99))
    def finish(self, i):
        req = self.live.pop(i % len(self.live))
        self.kv.release(req)
        assert req.slots == [] and req.last_node is None

    @rule(n=st.integers(0, 80))
    def evict(self, n):
        before = self.kv.available
        evicted = self.kv.cache.evict(n)
        assert self.kv.available == before + evicted

    @invariant()
    def every_page_once(self):
        if not hasattr(self, "kv"):
            return
        kv = self.kv
        ps = kv.page_size
        alloc = kv.allocator
        free = alloc.free_page_set()
        assert len(free) == alloc.free_pages
        cached = kv.cache.all_slots()
        cached_pages = [s // ps for s in cached[::ps]]
        assert len(cached) == len(set(cached)) == len(cached_pages) * ps
        owned_pages = []
        for r in self.live:
            own = r.slots[r.cache_len :]
            owned_pages += [s // ps for s in own[::ps]]
        everything = list(free) + cached_pages + owned_pages
        assert len(everything) == len(set(everything)) == alloc.num_pages - 1
        assert 0 not in everything

    @invariant()
    def locked_prefixes_stay_and_sizes_add_up(self):
        if not hasattr(self, "kv"):
            return
        cache = self.kv.cache
        for r in self.live:
            slots, _ = cache.match_prefix(r.all_ids[: r.cache_len], r.extra_key, touch=False)
            assert slots == r.slots[: r.cache_len]
        nodes = list(cache.nodes())
        assert cache.evictable_size == sum(len(n.value) for n in nodes if n.lock_ref == 0)
        assert cache.protected_size == sum(len(n.value) for n in nodes if n.lock_ref > 0)
        for n in nodes:
            assert n.lock_ref >= max((c.lock_ref for c in n.children.values()), default=0)
            assert len(n.key) == len(n.value) and len(n.key) % self.kv.page_size == 0


KVMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestKV = KVMachine.TestCase
