"""Radix tree over token ids whose nodes hold KV slot indices (SGLang's RadixCache, rebuilt).

Every namespace (``extra_key``: a LoRA id, a cache salt) has its own root, so namespaces never
share KV. Node keys and values have equal lengths, multiples of ``page_size``; children are keyed
by their first page of tokens. A node with ``lock_ref > 0`` is in use by a running request (the
lock is taken on a request's deepest node and counted on every ancestor) and is never evicted.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence

from radixserve.scheduler.eviction import make_eviction_policy

logger = logging.getLogger(__name__)

_ids = itertools.count()


class TreeNode:
    __slots__ = ("key", "value", "children", "parent", "lock_ref", "last_access", "hits", "id")

    def __init__(self, key: list[int], value: list[int], parent: TreeNode | None) -> None:
        self.key = key
        self.value = value
        self.children: dict[int | tuple[int, ...], TreeNode] = {}
        self.parent = parent
        self.lock_ref = 0
        self.last_access = 0
        self.hits = 0
        self.id = next(_ids)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def __lt__(self, other: TreeNode) -> bool:  # heap tie-break
        return self.id < other.id


class RadixCache:
    def __init__(
        self,
        page_size: int = 1,
        free_fn: Callable[[Sequence[int]], None] | None = None,
        eviction_policy: str = "lru",
    ) -> None:
        self.page_size = page_size
        self.free_fn = free_fn if free_fn is not None else (lambda slots: None)
        self.policy = make_eviction_policy(eviction_policy)
        self.reset()

    def reset(self) -> None:
        """Forget everything (the caller owns what the slots become)."""
        self._roots: dict[str | None, TreeNode] = {}
        self._clock = 0
        self.evictable_size = 0
        self.protected_size = 0
        self.evicted_tokens_total = 0  # read by the service's metrics

    @property
    def total_size(self) -> int:
        return self.evictable_size + self.protected_size

    def root(self, extra_key: str | None = None) -> TreeNode:
        node = self._roots.get(extra_key)
        if node is None:
            node = TreeNode([], [], None)
            node.lock_ref = 1  # NOTE: roots are never evicted nor counted in the sizes
            self._roots[extra_key] = node
        return node

    def _child_key(self, key: Sequence[int], pos: int) -> int | tuple[int, ...]:
        if self.page_size == 1:
            return key[pos]
        return tuple(key[pos : pos + self.page_size])

    def _match_len(self, node_key: list[int], key: Sequence[int], pos: int) -> int:
        n = len(node_key)
        if key[pos : pos + n] == node_key:
            return n
        i = 0
        limit = min(n, len(key) - pos)
        while i < limit and node_key[i] == key[pos + i]:
            i += 1
        return i - i % self.page_size

    def _touch(self, node: TreeNode) -> None:
        self._clock += 1
        node.last_access = self._clock
        node.hits += 1

    def _split(self, child: TreeNode, n: int) -> TreeNode:
        """Cut ``child`` after ``n`` tokens; the new upper node takes its place and lock count."""
        parent = child.parent
        assert parent is not None  # NOTE: only roots lack a parent, and a root is nobody's child
        upper = TreeNode(child.key[:n], child.value[:n], parent)
        upper.lock_ref = child.lock_ref
        upper.last_access = child.last_access
        upper.hits = child.hits
        child.key = child.key[n:]
        child.value = child.value[n:]
        child.parent = upper
        upper.children[self._child_key(child.key, 0)] = child
        parent.children[self._child_key(upper.key, 0)] = upper
        return upper

    def match_prefix(
        self, key: Sequence[int], extra_key: str | None = None, touch: bool = True
    ) -> tuple[list[int], TreeNode]:
        """Slots of the longest cached prefix of ``key`` (whole pages) and its deepest node."""
        key = key[: len(key) - len(key) % self.page_size]
        node = self.root(extra_key)
        slots: list[int] = []
        pos = 0
        while pos < len(key):
            child = node.children.get(self._child_key(key, pos))
            if child is None:
                break
            n = self._match_len(child.key, key, pos)
            partial = n < len(child.key)
            if partial:
                child = self._split(child, n)
            if touch:
                self._touch(child)
            slots.extend(child.value)
            node = child
            pos += n
            if partial:
                break
        return slots, node

    def insert(self, key: Sequence[int], value: Sequence[int], extra_key: str | None = None) -> int:
        """Insert ``key -> value`` (page-aligned); return how many leading tokens were cached.

        Slots ``value[:returned]`` are not taken by the tree: the caller frees those it owns.
        """
        if len(key) != len(value) or len(key) % self.page_size:
            raise ValueError("insert: key and value must have one page-aligned length")
        node = self.root(extra_key)
        pos = 0
        while pos < len(key):
            child = node.children.get(self._child_key(key, pos))
            if child is None:
                leaf = TreeNode(list(key[pos:]), list(value[pos:]), node)
                node.children[self._child_key(leaf.key, 0)] = leaf
                self._touch(leaf)
                self.evictable_size += len(leaf.value)
                return pos
            n = self._match_len(child.key, key, pos)
            if n < len(child.key):
                child = self._split(child, n)
            self._touch(child)
            node = child
            pos += n
        return pos

    def lock(self, node: TreeNode) -> None:
        while node.parent is not None:
            if node.lock_ref == 0:
                self.evictable_size -= len(node.value)
                self.protected_size += len(node.value)
            node.lock_ref += 1
            node = node.parent

    def unlock(self, node: TreeNode) -> None:
        while node.parent is not None:
            if node.lock_ref == 1:
                self.evictable_size += len(node.value)
                self.protected_size -= len(node.value)
            elif node.lock_ref <= 0:
                raise RuntimeError("radix cache: unlock of an unlocked node")
            node.lock_ref -= 1
            node = node.parent

    def nodes(self) -> Iterator[TreeNode]:
        """Every non-root node."""
        stack = [c for r in self._roots.values() for c in r.children.values()]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())

    def evict(self, num_tokens: int) -> int:
        """Free at least ``num_tokens`` slots of unlocked leaves if possible; return how many."""
        if num_tokens <= 0:
            return 0
        prio = self.policy.priority
        heap = [(prio(n), n) for n in self.nodes() if n.is_leaf and n.lock_ref == 0]
        heapq.heapify(heap)
        evicted = 0
        while evicted < num_tokens and heap:
            _, node = heapq.heappop(heap)
            parent = node.parent
            assert parent is not None  # NOTE: nodes() yields no roots
            del parent.children[self._child_key(node.key, 0)]
            self.free_fn(node.value)
            self.evictable_size -= len(node.value)
            evicted += len(node.value)
            if parent.parent is not None and parent.is_leaf and parent.lock_ref == 0:
                heapq.heappush(heap, (prio(parent), parent))
        self.evicted_tokens_total += evicted
        if evicted:
            logger.debug("evicted %d tokens (asked %d)", evicted, num_tokens)
        return evicted

    def evict_all(self) -> int:
        """Free every unlocked node (cache flush); locked paths stay."""
        return self.evict(self.evictable_size)

    def all_slots(self) -> list[int]:
        return [s for n in self.nodes() for s in n.value]
