"""Several engines behind one tokenizer: one :class:`SchedulerLink` per scheduler address.

:class:`SchedulerPool` is the manager's ``Upstream``. It routes each new request (all n samples
of one client request together) with :class:`~services.tokenizer.router.Router`, remembers which
link owns each rid so that aborts follow the request, polls every scheduler's ``GetLoad`` in the
background, and fails only the requests of a link whose stream broke. A request that a draining
engine refuses before running any of it (``retry_elsewhere``) goes to another ready engine instead
of failing: the front door learns of a drain from the refusal itself, not only from its next
readiness probe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import grpc

from radixserve.common.errors import Unavailable
from radixserve.common.outputs import RequestOutput
from radixserve.common.types import ModelInfo
from radixserve.tokenizer.clients import SchedulerLink
from radixserve.tokenizer.manager import RequestManager
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.tokenizer.router import EngineLoad, Router, RouterConfig

logger = logging.getLogger(__name__)


def parse_addresses(addresses: str | Sequence[str]) -> list[str]:
    """``"a:1,b:2"`` or a list → addresses; ValueError naming the flag when none is given."""
    items = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    out = [a.strip() for a in items if a.strip()]
    if not out:
        raise ValueError("scheduler_address: at least one scheduler address is required")
    return out


def check_same_model(addresses: list[str], infos: list[ModelInfo]) -> ModelInfo:
    """The engines' common model info; RuntimeError naming the first disagreement."""
    first = infos[0]
    for address, info in zip(addresses[1:], infos[1:], strict=True):
        for name in ("model_name", "vocab_size", "max_context_len", "eos_token_ids"):
            a, b = _plain(getattr(first, name)), _plain(getattr(info, name))
            if a != b:
                raise RuntimeError(
                    f"schedulers disagree on {name}: {addresses[0]} has {a!r}, {address} has "
                    f"{b!r}; every engine behind one tokenizer must serve the same model"
                )
    return first


def _plain(value: object) -> object:
    return list(value) if isinstance(value, (list, tuple)) else value


class _LinkSink:
    """One link's outputs: the pool forgets finished rids, then the manager gets them."""

    def __init__(self, pool: SchedulerPool, index: int, manager: RequestManager) -> None:
        self.pool, self.index, self.manager = pool, index, manager

    def on_outputs(self, outputs: list[RequestOutput]) -> None:
        passed = []
        for out in outputs:
            if out.retry_elsewhere and self.pool.reroute(self.index, out.rid):
                continue
            self.pool.unstarted.pop(out.rid, None)
            if out.finish_reason is not None:
                self.pool.forget(out.rid)
            passed.append(out)
        self.manager.on_outputs(passed)

    def fail_all(self, message: str) -> None:
        rids = self.pool.rids_of(self.index)
        for rid in rids:
            self.pool.forget(rid)
        self.manager.fail(rids, message)


class SchedulerPool:
    def __init__(
        self,
        addresses: str | Sequence[str],
        name: str,
        poll_seconds: float = 0.5,
        router_cfg: RouterConfig | None = None,
    ) -> None:
        self.addresses = parse_addresses(addresses)
        self.links = [SchedulerLink(a, name) for a in self.addresses]
        self.router = Router(len(self.links), router_cfg)
        self.poll_seconds = poll_seconds
        self.owner: dict[str, int] = {}  # rid -> link index
        # rid -> its input, until the engine's first news of it: a drain refusal is re-sent
        self.unstarted: dict[str, GenerateInput] = {}
        self.rerouted = 0  # requests a draining engine refused and another one took
        self._poll_task: asyncio.Task | None = None
        self.on_change: Callable[[bool], None] = lambda ready: None
        for link in self.links:
            link.on_change = self._link_changed

    @property
    def ready(self) -> bool:
        """At least one engine takes new requests."""
        return any(link.ready for link in self.links)

    def _link_changed(self) -> None:
        self.router.down = {i for i, link in enumerate(self.links) if not link.ready}
        self.on_change(self.ready)

    async def wait_ready(self, timeout: float) -> None:
        await asyncio.gather(*(link.wait_ready(timeout) for link in self.links))

    async def wait_connected(self, timeout: float) -> None:
        """After :meth:`start`: waits until some link's stream is open and ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ready:
            if loop.time() > deadline:
                raise TimeoutError(f"no scheduler stream open after {timeout:.0f}s")
            await asyncio.sleep(0.02)

    async def get_engine_info(self, timeout: float = 10.0) -> ModelInfo:
        infos = await asyncio.gather(*(link.get_engine_info(timeout) for link in self.links))
        return check_same_model(self.addresses, list(infos))

    def add(self, reqs: list[GenerateInput]) -> None:
        """Routes ``reqs`` (one client request's samples, same prompt) to one link."""
        if not reqs:
            return
        if not self.ready:
            reason = "; ".join(link.down_reason for link in self.links)
            raise Unavailable(f"no scheduler is ready ({reason})")
        index = self.router.choose(reqs[0].input_ids)
        self.links[index].add(reqs)  # raises (nothing recorded) when invalid or the link is down
        for req in reqs:
            self.owner[req.rid] = index
            self.unstarted[req.rid] = req
        self.router.in_flight[index] += len(reqs)

    def reroute(self, index: int, rid: str) -> bool:
        """Link ``index`` refused unstarted ``rid`` because it is draining: the link leaves the
        routing at once and the request goes to another ready engine. False when there is none
        (or ``rid`` is not one of ours there); the refusal then reaches the client."""
        self.links[index].refused_draining()
        req = self.unstarted.get(rid)
        if req is None or self.owner.get(rid) != index or not self.ready:
            return False
        other = self.router.choose(req.input_ids)
        if other == index:
            return False
        try:
            self.links[other].add([req])
        except Unavailable:
            return False
        self.owner[rid] = other
        self.router.in_flight[index] -= 1
        self.router.in_flight[other] += 1
        self.rerouted += 1
        logger.info("request re-routed from a draining engine", extra={"kv": {"rid": rid}})
        return True

    def abort(self, rids: list[str]) -> None:
        """Sends each abort to the link that has the request; unknown (finished) rids drop."""
        per_link: dict[int, list[str]] = {}
        for rid in rids:
            index = self.owner.get(rid)
            if index is not None:
                per_link.setdefault(index, []).append(rid)
                self.forget(rid)
        for index, group in per_link.items():
            self.links[index].abort(group)

    def forget(self, rid: str) -> None:
        self.unstarted.pop(rid, None)
        index = self.owner.pop(rid, None)
        if index is not None:
            self.router.in_flight[index] -= 1

    def rids_of(self, index: int) -> list[str]:
        return [rid for rid, i in self.owner.items() if i == index]

    def start(self, manager: RequestManager) -> None:
        for index, link in enumerate(self.links):
            link.start(_LinkSink(self, index, manager))
        if len(self.links) > 1:
            self._poll_task = asyncio.create_task(self._poll(), name="scheduler-load-poll")

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            await asyncio.gather(self._poll_task, return_exceptions=True)
        await asyncio.gather(*(link.close() for link in self.links))

    async def _poll(self) -> None:
        while True:
            await asyncio.gather(*(self._poll_one(i) for i in range(len(self.links))))
            await asyncio.sleep(self.poll_seconds)

    async def _poll_one(self, index: int) -> None:
        try:
            resp = await self.links[index].get_load(timeout=max(self.poll_seconds, 1.0))
        except grpc.aio.AioRpcError as exc:
            logger.debug("load poll failed", extra={"kv": {"link": index, "code": exc.code()}})
            return
        load = EngineLoad(resp.running, resp.waiting, resp.kv_usage)
        self.router.set_load(index, load)
