"""Schedule policies: the order in which waiting requests are offered to admission.

An abstract base plus a registry; an unknown name fails listing the known ones.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from radixserve.scheduler.request import Request

logger = logging.getLogger(__name__)

PrefixLenFn = Callable[[Request], int]


class SchedulePolicy(ABC):
    name: str = ""

    def configure(self, cfg: object) -> None:  # noqa: B027 - optional hook
        """Read the options this policy uses from the scheduler core config."""

    @abstractmethod
    def order(self, waiting: list[Request], prefix_len: PrefixLenFn) -> list[Request]:
        """Return ``waiting`` in admission order (a new list; ``waiting`` is not changed)."""


class FCFSPolicy(SchedulePolicy):
    """First come, first served (a retracted request keeps its arrival time, so it goes first)."""

    name = "fcfs"

    def order(self, waiting: list[Request], prefix_len: PrefixLenFn) -> list[Request]:
        return sorted(waiting, key=lambda r: r.arrival)


class PriorityPolicy(SchedulePolicy):
    """Larger ``priority`` first, FCFS among equals."""

    name = "priority"

    def order(self, waiting: list[Request], prefix_len: PrefixLenFn) -> list[Request]:
        return sorted(waiting, key=lambda r: (-r.priority, r.arrival))


class LongestPrefixPolicy(SchedulePolicy):
    """Longest cached prefix first (SGLang's ``lpm``); FCFS past ``max_queue`` waiting requests,
    where matching every request each step would cost more than it saves."""

    name = "lpm"

    def __init__(self, max_queue: int = 128) -> None:
        self.max_queue = max_queue

    def configure(self, cfg: object) -> None:
        self.max_queue = getattr(cfg, "lpm_max_queue", self.max_queue)

    def order(self, waiting: list[Request], prefix_len: PrefixLenFn) -> list[Request]:
        if len(waiting) > self.max_queue:
            return sorted(waiting, key=lambda r: r.arrival)
        keyed = [(-prefix_len(r), r.arrival, i) for i, r in enumerate(waiting)]
        keyed.sort()
        return [waiting[i] for _, _, i in keyed]


_REGISTRY: dict[str, Callable[[], SchedulePolicy]] = {
    "fcfs": FCFSPolicy,
    "priority": PriorityPolicy,
    "lpm": LongestPrefixPolicy,
}


def register_schedule_policy(name: str, factory: Callable[[], SchedulePolicy]) -> None:
    _REGISTRY[name] = factory


def known_schedule_policies() -> list[str]:
    return sorted(_REGISTRY)


def make_schedule_policy(name: str) -> SchedulePolicy:
    factory = _REGISTRY.get(name.lower())
    if factory is None:
        known = ", ".join(known_schedule_policies())
        raise ValueError(f"schedule_policy: unknown {name!r}; known: {known}")
    return factory()
