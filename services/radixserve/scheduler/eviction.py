"""Radix-cache eviction policies: an abstract base and a registry (lowest priority goes first)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radixserve.scheduler.radix_cache import TreeNode

logger = logging.getLogger(__name__)


class EvictionPolicy(ABC):
    name: str = ""

    @abstractmethod
    def priority(self, node: TreeNode) -> tuple:
        """Sort key of an evictable leaf; the smallest is evicted first."""


class LRUPolicy(EvictionPolicy):
    name = "lru"

    def priority(self, node: TreeNode) -> tuple:
        return (node.last_access,)


class LFUPolicy(EvictionPolicy):
    """Least hits first; ties broken by least recent access."""

    name = "lfu"

    def priority(self, node: TreeNode) -> tuple:
        return (node.hits, node.last_access)


_REGISTRY: dict[str, type[EvictionPolicy]] = {"lru": LRUPolicy, "lfu": LFUPolicy}


def register_eviction_policy(name: str, cls: type[EvictionPolicy]) -> None:
    _REGISTRY[name] = cls


def make_eviction_policy(name: str) -> EvictionPolicy:
    cls = _REGISTRY.get(name.lower())
    if cls is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"eviction_policy: unknown {name!r}; known: {known}")
    return cls()
