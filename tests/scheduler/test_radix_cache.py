from __future__ import annotations

import pytest

from radixserve.scheduler.eviction import make_eviction_policy
from radixserve.scheduler.radix_cache import RadixCache


class Freed(list):
    def __call__(self, slots):
        self.extend(slots)


def make(page_size=1, policy="lru"):
    freed = Freed()
    return RadixCache(page_size, freed, policy), freed


def test_match_splits_node_and_insert_returns_cached_len():
    c, _ = make()
    assert c.insert([1, 2, 3, 4], [11, 12, 13, 14]) == 0
    slots, node = c.match_prefix([1, 2, 9])
    assert slots == [11, 12] and node.key == [1, 2] and len(node.children) == 1
    (child,) = node.children.values()
    assert child.key == [3, 4] and child.value == [13, 14] and child.parent is node
    assert c.insert([1, 2, 3, 7, 8], [21, 22, 23, 24, 25]) == 3
    assert c.match_prefix([1, 2, 3, 7, 8, 9])[0] == [11, 12, 13, 24, 25]
    assert c.total_size == 6 and c.evictable_size == 6
    assert c.insert([1, 2, 3], [31, 32, 33]) == 3  # all cached: nothing taken


def test_extra_key_namespaces_never_share():
    c, _ = make()
    c.insert([1, 2, 3], [11, 12, 13], extra_key="lora-a")
    assert c.match_prefix([1, 2, 3], extra_key="lora-b")[0] == []
    assert c.match_prefix([1, 2, 3])[0] == []
    assert c.match_prefix([1, 2, 3], extra_key="lora-a")[0] == [11, 12, 13]
    assert c.insert([1, 2, 3], [21, 22, 23]) == 0


def test_lock_protects_up_to_root_and_evict_requeues_parent():
    c, freed = make()
    c.insert([1, 2, 3], [11, 12, 13])
    c.insert([1, 2, 4], [11, 12, 14])
    _, leaf3 = c.match_prefix([1, 2, 3])
    c.lock(leaf3)
    assert c.protected_size == 3 and c.evictable_size == 1
    assert c.evict(100) == 1 and freed == [14]
    assert c.match_prefix([1, 2, 3])[0] == [11, 12, 13]
    c.unlock(leaf3)
    assert c.evictable_size == 3
    assert c.evict(1) == 1 and freed == [14, 13]  # leaf [3] first...
    assert c.evict(1) == 2 and sorted(freed) == [11, 12, 13, 14]  # ...then its parent [1, 2]
    assert c.total_size == 0
    with pytest.raises(RuntimeError):
        c.unlock(leaf3)


def test_lru_and_lfu_order():
    for policy, first_out in (("lru", [11, 12]), ("lfu", [21, 22])):
        c, freed = make(policy=policy)
        c.insert([1, 2], [11, 12])
        c.insert([5, 6], [21, 22])
        for _ in range(3):
            c.match_prefix([1, 2])  # [1, 2]: many hits, long ago
        c.match_prefix([5, 6])  # [5, 6]: one more hit, most recent
        c.evict(2)
        assert freed == first_out, policy


def test_unknown_eviction_policy_lists_known():
    with pytest.raises(ValueError, match="lfu, lru"):
        make_eviction_policy("fifo")


def test_pages_match_and_evict_whole():
    c, freed = make(page_size=4)
    key = list(range(1, 9))
    c.insert(key, list(range(40, 48)))
    assert c.match_prefix([1, 2, 3, 4, 5, 6, 9, 9])[0] == [40, 41, 42, 43]  # page 2 differs
    assert c.match_prefix(key[:7])[0] == [40, 41, 42, 43]  # a partial page never matches
    with pytest.raises(ValueError, match="page-aligned"):
        c.insert([1, 2, 3], [1, 2, 3])
    assert c.insert([1, 2, 3, 4, 9, 9, 9, 9], [40, 41, 42, 43, 52, 53, 54, 55]) == 4
    c.evict(1)
    assert len(freed) == 4 and freed[0] % 4 == 0  # one whole page
    assert all(len(n.value) % 4 == 0 for n in c.nodes())


def test_match_without_touch_keeps_lru_order():
    c, freed = make()
    c.insert([1], [11])
    c.insert([2], [12])
    c.match_prefix([1], touch=False)
    c.evict(1)
    assert freed == [11]
