"""EngineLoop with a fake step stream (no grpc): overlap, dispatch per tokenizer, refusals, and
supervision (a dead, hung or failing worker; reconnect to a different capacity)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from radixserve.common.outputs import FinishKind
from radixserve.scheduler.core_config import SchedulerCoreConfig
from radixserve.scheduler.engine_io import LoopConfig
from radixserve.scheduler.engine_loop import EngineLoop
from radixserve.scheduler.metrics import SchedulerMetrics
from radixserve.scheduler.scheduler import Scheduler
from tests.scheduler.conftest import make_info, make_req
from tests.scheduler.fake_stream import FakeLink
from tests.scheduler.fake_worker import reference

pytestmark = pytest.mark.timeout(30)
FAST = LoopConfig(step_timeout=5.0, reconnect_min=0.01, reconnect_max=0.05, ready_timeout=0.05)


class Harness:
    """An EngineLoop on a FakeLink, run as a task; records readiness changes."""

    def __init__(self, link: FakeLink, cfg: LoopConfig = FAST) -> None:
        self.link = link
        self.readiness: list[bool] = []
        self.loop = EngineLoop(
            link,
            lambda info: Scheduler(SchedulerCoreConfig(), info),
            SchedulerMetrics(),
            cfg,
            on_ready=self._on_ready,
        )

    async def _on_ready(self, ready: bool) -> None:
        self.readiness.append(ready)

    async def __aenter__(self) -> Harness:
        await self.loop.connect(1.0)
        self.task = asyncio.create_task(self.loop.run())
        await self.until(lambda: self.loop.ready)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def until(self, cond, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.005)


async def collect(client, rids: set[str], timeout: float = 5.0) -> dict:
    """Token ids and finish reason per rid, until every rid in ``rids`` finished."""
    out: dict[str, list[int]] = {}
    fin: dict = {}
    async with asyncio.timeout(timeout):
        while not rids <= set(fin):
            outputs = await client.outbox.get()
            for ev in outputs.events:
                assert ev.rid not in fin, "an event after the finish"
                out.setdefault(ev.rid, []).extend(ev.token_ids)
                if ev.finish_reason is not None:
                    fin[ev.rid] = ev.finish_reason
    return {rid: (out.get(rid, []), fin[rid]) for rid in rids}


def run(coro) -> None:
    asyncio.run(coro)


def test_overlap_and_dispatch_per_tokenizer():
    info = make_info(num_slots=400, max_rows=8)

    async def main():
        async with Harness(FakeLink(info, eos_every=9)) as h:
            a, b = h.loop.register(), h.loop.register()
            prompts = {str(i): [i + 1] * (3 + i) for i in range(6)}
            h.loop.add_requests(a, [make_req(r, p, max_new=12) for r, p in prompts.items()])
            h.loop.add_requests(b, [make_req("0", [50, 51], max_new=5)])  # same rid, other client
            got_a = await collect(a, set(prompts))
            got_b = await collect(b, {"0"})
            for rid, p in prompts.items():
                assert got_a[rid][0] == reference(p, 12, info, 9)
            assert got_b["0"][0] == reference([50, 51], 5, info, 9)
            stream = h.link.stream
            assert stream.max_in_flight == 2  # step N+1 went out before result N was read
            assert stream.errors == []
            await h.until(lambda: not h.loop.core.has_work)
            assert h.loop.stats().running == 0 and not a.rids and not b.rids

    run(main())


def test_refusals_name_the_field_and_duplicates():
    info = make_info(num_slots=64, ctx=512)

    async def main():
        async with Harness(FakeLink(info)) as h:
            c = h.loop.register()
            h.loop.add_requests(c, [make_req("big", [1] * 20, max_new=100)])
            h.loop.add_requests(c, [make_req("ok", [1] * 20, max_new=40, ignore_eos=True)])
            h.loop.add_requests(c, [make_req("ok", [2], max_new=1)])  # already running
            first = await c.outbox.get()
            (ev,) = first.events
            assert ev.rid == "big" and ev.finish_reason.kind == FinishKind.ERROR
            assert ev.finish_reason.message.startswith("max_new_tokens:")
            second = await c.outbox.get()
            assert second.events[0].rid == "ok" and "already running" in (
                second.events[0].finish_reason.message
            )
            got = await collect(c, {"ok"})
            assert len(got["ok"][0]) == 40 and got["ok"][1].kind == FinishKind.LENGTH
            assert h.loop.info.max_context_len == h.loop.core.max_request_len == 64

    run(main())


def test_tokenizer_going_away_aborts_its_requests():
    info = make_info()

    async def main():
        async with Harness(FakeLink(info)) as h:
            c = h.loop.register()
            h.loop.add_requests(c, [make_req(str(i), [i + 1] * 5, max_new=200) for i in range(4)])
            await h.until(lambda: h.loop.core.num_running == 4)
            h.loop.unregister(c)
            await h.until(lambda: not h.loop.core.has_work)
            assert h.loop.core.kv.in_use == 0 and not h.loop.clients

    run(main())


def test_worker_lost_mid_run_fails_requests_then_reconnects_to_a_bigger_worker():
    info = make_info(num_slots=200, max_rows=4)

    async def main():
        link = FakeLink(info)
        async with Harness(link) as h:
            c = h.loop.register()
            h.loop.add_requests(c, [make_req(str(i), [i + 1] * 5, max_new=150) for i in range(3)])
            await h.until(lambda: len(link.stream.sent) > 5)
            link.up = False
            link.stream.kill("connection reset by peer")
            got = await collect(c, {"0", "1", "2"})
            for _, reason in got.values():
                assert reason.kind == FinishKind.ERROR
                assert reason.message == "worker unavailable: connection reset by peer"
            await h.until(lambda: not h.loop.ready)
            assert h.readiness == [True, False] and h.loop.core is None
            h.loop.add_requests(c, [make_req("late", [3], max_new=2)])
            (late,) = (await c.outbox.get()).events
            assert late.finish_reason.kind == FinishKind.ERROR
            assert late.finish_reason.message.startswith("worker unavailable")
            link.info = replace(info, num_slots=600, max_rows=8)  # the new worker is bigger
            link.up = True
            await h.until(lambda: h.loop.ready)
            assert h.readiness == [True, False, True]
            assert h.loop.core.kv.capacity == 599 and h.loop.core.max_running == 8
            h.loop.add_requests(c, [make_req("new", [7] * 5, max_new=300, ignore_eos=True)])
            got = await collect(c, {"new"})
            assert got["new"][0] == reference([7] * 5, 300, link.info, 0)
            assert link.streams[0].closed and len(link.streams) == 2

    run(main())


def test_idle_worker_death_turns_readiness_off():
    async def main():
        link = FakeLink(make_info())
        async with Harness(link) as h:
            link.up = False
            link.stream.kill("EOF")
            await h.until(lambda: not h.loop.ready, timeout=2.0)
            link.up = True
            await h.until(lambda: h.loop.ready, timeout=2.0)

    run(main())


def test_watchdog_turns_a_hung_step_into_a_failure():
    cfg = replace(FAST, step_timeout=0.2)

    async def main():
        link = FakeLink(make_info())
        async with Harness(link, cfg) as h:
            c = h.loop.register()
            link.stream.hang = True
            h.loop.add_requests(c, [make_req("a", [1, 2], max_new=5)])
            got = await collect(c, {"a"})
            assert got["a"][1].kind == FinishKind.ERROR
            assert "no result for step 0 in 0.2 s" in got["a"][1].message
            await h.until(lambda: h.loop.ready and len(link.streams) == 2)
            h.loop.add_requests(c, [make_req("b", [1, 2], max_new=5)])
            assert (await collect(c, {"b"}))["b"][1].kind != FinishKind.ERROR

    run(main())


def test_a_rejected_step_fails_live_requests_and_starts_a_new_session():
    async def main():
        link = FakeLink(make_info())
        async with Harness(link) as h:
            c = h.loop.register()
            h.loop.add_requests(c, [make_req("long", [3, 4], max_new=500, ignore_eos=True)])
            await h.until(lambda: len(link.stream.sent) > 3)
            link.stream.fail_next = "context overflow"
            h.loop.add_requests(c, [make_req("a", [1, 2], max_new=5)])
            got = await collect(c, {"a", "long"})
            for rid in ("a", "long"):
                assert got[rid][1].kind == FinishKind.ERROR
                assert got[rid][1].message == "worker step failed: context overflow"
            await h.until(lambda: len(link.streams) == 2)
            # The rejected step wrote no KV, so nothing of it may be served from the cache.
            assert h.loop.core.kv.cached == 0
            h.loop.add_requests(c, [make_req("b", [1, 2], max_new=5)])
            got = await collect(c, {"b"})
            assert got["b"][0] == reference([1, 2], 5, link.info, 0)
            assert h.readiness == [True] and link.streams[-1].errors == []

    run(main())


def test_drain_refuses_new_requests_finishes_the_running_then_ends_the_rest():
    info = make_info(num_slots=4000, max_rows=2, ctx=4096)

    async def main():
        async with Harness(FakeLink(info)) as h:
            c = h.loop.register()
            long = make_req("long", [3] * 4, max_new=3000, ignore_eos=True)
            reqs = [
                make_req(r, [i + 1] * 4, max_new=10, ignore_eos=True) for i, r in enumerate("ab")
            ]
            h.loop.add_requests(c, [*reqs, long])  # two rows: "long" waits in the queue
            await h.loop.start_drain()  # before a step: all three were accepted
            assert h.readiness[-1] is False and not h.loop.ready
            h.loop.add_requests(c, [make_req("late", [9], max_new=2)])
            got = await collect(c, {"late", "a", "b"})
            assert got["late"][1].kind == FinishKind.ERROR
            assert "shutting down" in got["late"][1].message
            for rid in "ab":  # the running ones go on to their end
                assert len(got[rid][0]) == 10 and got[rid][1].kind == FinishKind.LENGTH
            await h.until(lambda: h.loop.core.num_running == 1)  # the queued one runs too
            assert h.loop.has_work
            h.task.cancel()
            await asyncio.gather(h.task, return_exceptions=True)
            assert h.loop.end_all("scheduler shut down (drain period of 1s over)") == 1
            (last,) = (await c.outbox.get()).events
            assert last.rid == "long" and last.finish_reason.kind == FinishKind.ERROR
            assert last.finish_reason.message == "scheduler shut down (drain period of 1s over)"
            assert not h.loop.has_work and h.loop.core.kv.in_use == 0
            await h.loop.close_clients(timeout=0.1)
            assert await c.outbox.get() is None  # the server's Connect ends the stream on it

    run(main())
