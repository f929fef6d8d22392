"""Which engine (scheduler) gets a new request: least load first, then prefix affinity.

Transport-free: the scheduler pool feeds it polled loads and its own in-flight counts and asks
:meth:`Router.choose` for a link index.

Policy (in the spirit of SGLang's cache-aware router, simplified to a prefix hash):

1. Each link's load is ``max(in_flight, polled running + waiting)`` (the poll also counts other
   tokenizer replicas' requests and our own ones, so the maximum avoids counting ours twice),
   plus ``kv_usage`` as a fraction to break ties between equally busy engines.
2. A request whose first ``prefix_len`` tokens (at least ``min_prefix`` of them) were recently
   routed to link ``a`` goes to ``a`` again — its KV prefix is probably cached there — unless
   ``a`` is much busier than the least loaded link (by more than ``slack`` requests and more than
   ``ratio`` times its load).
3. Otherwise the least loaded link wins; ties rotate, so an idle pool spreads new prefixes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EngineLoad:
    """A scheduler's last answer to GetLoad."""

    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0


@dataclass(frozen=True)
class RouterConfig:
    prefix_len: int = 128  # tokens hashed for affinity
    min_prefix: int = 16  # shorter prompts are routed by load only
    lru_size: int = 4096  # remembered prefixes
    slack: int = 4  # affinity holds while the link has at most this many more requests...
    ratio: float = 2.0  # ...or at most this many times the least loaded link's load


class Router:
    def __init__(self, num_links: int, cfg: RouterConfig | None = None) -> None:
        if num_links < 1:
            raise ValueError("a router needs at least one link")
        self.cfg = cfg or RouterConfig()
        self.loads = [EngineLoad() for _ in range(num_links)]
        self.in_flight = [0] * num_links
        self.down: set[int] = set()  # links that take no new requests now
        self._prefixes: OrderedDict[int, int] = OrderedDict()
        self._turn = 0

    @property
    def num_links(self) -> int:
        return len(self.loads)

    def set_load(self, link: int, load: EngineLoad) -> None:
        self.loads[link] = load

    def score(self, link: int) -> float:
        load = self.loads[link]
        return max(self.in_flight[link], load.running + load.waiting) + load.kv_usage

    def prefix_key(self, ids: Sequence[int]) -> int | None:
        if len(ids) < self.cfg.min_prefix:
            return None
        return hash(tuple(ids[: self.cfg.prefix_len]))

    def choose(self, ids: Sequence[int]) -> int:
        """The link for a new request with prompt ``ids``; remembers its prefix there."""
        least = self._least_loaded()
        key = self.prefix_key(ids)
        chosen = least
        if key is not None:
            sticky = self._prefixes.get(key)
            if (
                sticky is not None
                and sticky not in self.down
                and not self._much_busier(sticky, least)
            ):
                chosen = sticky
            self._remember(key, chosen)
        return chosen

    def _least_loaded(self) -> int:
        n = self.num_links
        order = [(self._turn + k) % n for k in range(n)]
        order = [i for i in order if i not in self.down] or order
        best = min(order, key=self.score)  # min keeps the first of equals: rotation breaks ties
        self._turn = (best + 1) % n
        return best

    def _much_busier(self, link: int, least: int) -> bool:
        a, b = self.score(link), self.score(least)
        return a - b > self.cfg.slack and a > self.cfg.ratio * b

    def _remember(self, key: int, link: int) -> None:
        self._prefixes[key] = link
        self._prefixes.move_to_end(key)
        while len(self._prefixes) > self.cfg.lru_size:
            self._prefixes.popitem(last=False)
