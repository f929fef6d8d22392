from __future__ import annotations

import pytest

from radixserve.scheduler.allocator import KVAllocator, RowAllocator


def test_slot_zero_reserved_and_capacity():
    a = KVAllocator(17, page_size=1)
    assert a.capacity == 16 and a.available == 16
    got = a.alloc_pages(16)
    assert sorted(got) == list(range(1, 17))
    assert a.alloc_pages(1) is None
    a.free(got[:5])
    assert a.available == 5


def test_paged_grow_fills_last_page_first():
    a = KVAllocator(64, page_size=4)
    assert a.capacity == 60
    slots: list[int] = []
    slots += a.grow(slots, 3)
    assert slots[0] % 4 == 0 and slots == list(range(slots[0], slots[0] + 3))
    assert a.available == 56
    slots += a.grow(slots, 6)  # 1 slot in the open page, then 2 new pages
    assert a.available == 48 and len(slots) == 9
    for k in range(0, 9, 4):  # positions of one page share one page
        assert len({s // 4 for s in slots[k : k + 4]}) == 1
    assert 0 not in slots and len(set(slots)) == 9
    a.free(slots)
    assert a.available == 60


def test_pages_for():
    a = KVAllocator(64, page_size=4)
    assert a.pages_for(0, 1) == 1
    assert a.pages_for(3, 1) == 0
    assert a.pages_for(4, 1) == 1
    assert a.pages_for(4, 9) == 3


def test_grow_fails_without_taking_anything():
    a = KVAllocator(9, page_size=4)  # one usable page
    assert a.grow([], 5) is None
    assert a.available == 4


def test_bad_sizes():
    with pytest.raises(ValueError, match="page_size"):
        KVAllocator(16, page_size=0)
    with pytest.raises(ValueError, match="num_slots"):
        KVAllocator(4, page_size=4)


def test_rows_pending_until_sent_or_reused():
    r = RowAllocator(2)
    a, b = r.alloc(), r.alloc()
    assert {a, b} == {0, 1} and r.alloc() is None
    r.release(a)
    r.release(b)
    assert r.available == 2 and r.num_pending == 2 and r.unused == 2
    # A pending row may be reused at once: the new request's first step starts it over, so it
    # must not go out in release_rows any more.
    reused = r.alloc()
    assert reused in (a, b) and r.num_pending == 1
    assert r.take_pending() == [({a, b} - {reused}).pop()]
    assert r.num_pending == 0 and r.available == 1
