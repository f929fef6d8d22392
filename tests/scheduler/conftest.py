from __future__ import annotations

import pytest

from radixserve.common.types import ModelInfo, SamplingParams
from radixserve.scheduler.request import Request
from radixserve.scheduler.scheduler import Scheduler, SchedulerCoreConfig


def make_info(num_slots: int = 1024, max_rows: int = 32, ctx: int = 512, page_size: int = 1):
    return ModelInfo(
        model_name="toy",
        vocab_size=100,
        max_context_len=ctx,
        num_slots=num_slots,
        max_rows=max_rows,
        eos_token_ids=(0,),
        page_size=page_size,
    )


def make_req(rid: str, prompt: list[int], max_new: int = 8, **kw) -> Request:
    sampling_kw = {k: kw.pop(k) for k in ("stop_token_ids", "ignore_eos", "logprobs") if k in kw}
    return Request(rid, list(prompt), SamplingParams(max_new_tokens=max_new, **sampling_kw), **kw)


def assert_no_leak(sched: Scheduler) -> None:
    """Nothing running: every usable slot is free or cached (exactly once), every row free."""
    assert not sched.running and not sched.waiting
    kv = sched.kv
    free = kv.allocator.free_page_set()
    assert len(free) == kv.allocator.free_pages, "a page is twice in the free list"
    cached = kv.cache.all_slots() if kv.cache is not None else []
    assert len(cached) == len(set(cached))
    ps = kv.page_size
    cached_pages = {s // ps for s in cached}
    assert not cached_pages & free, "a page both cached and free"
    assert len(free) + len(cached_pages) == kv.allocator.num_pages - 1
    assert kv.evictable == kv.cached, "a lock was left behind"
    assert sched.rows.unused == sched.rows.max_rows


@pytest.fixture
def info():
    return make_info()


@pytest.fixture
def sched(info):
    return Scheduler(SchedulerCoreConfig(), info)
