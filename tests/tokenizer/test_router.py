"""Routing policy (least load, then prefix affinity) and the pool's bookkeeping, no network."""

from __future__ import annotations

import asyncio

import pytest

from radixserve.common.types import ModelInfo, SamplingParams
from radixserve.tokenizer.pool import SchedulerPool, check_same_model, parse_addresses
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.tokenizer.router import EngineLoad, Router, RouterConfig

LONG_A = list(range(100, 300))
LONG_B = list(range(1000, 1200))


def test_idle_links_take_turns():
    router = Router(3)
    picks = [router.choose([i]) for i in range(6)]  # short prompts: load only
    assert picks == [0, 1, 2, 0, 1, 2]


def test_least_loaded_wins_and_polled_load_counts():
    router = Router(2)
    router.in_flight[:] = [3, 1]
    assert router.choose([1, 2]) == 1
    router.set_load(1, EngineLoad(running=5, waiting=2))  # other replicas' requests
    assert router.choose([1, 2]) == 0
    # kv usage breaks ties between equally busy engines
    router = Router(2)
    router.set_load(0, EngineLoad(kv_usage=0.9))
    assert router.choose([1]) == 1 and router.choose([1]) == 1


def test_a_repeated_prefix_sticks_to_its_link():
    router = Router(2)
    first = router.choose(LONG_A)
    router.in_flight[first] += 1  # it is now busier than the other link...
    assert router.choose(LONG_A + [7, 8]) == first  # ...but only a little: affinity holds
    assert router.choose(LONG_B) != first  # a new prefix goes to the idle link


def test_affinity_yields_when_the_link_is_much_busier():
    router = Router(2, RouterConfig(slack=4, ratio=2.0))
    first = router.choose(LONG_A)
    other = 1 - first
    router.in_flight[first], router.in_flight[other] = 6, 1
    assert router.choose(LONG_A) == other
    assert router.choose(LONG_A) == other  # the prefix now lives there


def test_short_prompts_have_no_affinity_and_lru_is_bounded():
    router = Router(2, RouterConfig(min_prefix=16, lru_size=2))
    assert router.prefix_key(list(range(15))) is None
    for start in (0, 500, 900):
        router.choose(list(range(start, start + 20)))
    assert len(router._prefixes) == 2


def test_router_needs_a_link():
    with pytest.raises(ValueError):
        Router(0)


def test_parse_addresses():
    assert parse_addresses(" a:1, b:2 ,") == ["a:1", "b:2"]
    with pytest.raises(ValueError, match="scheduler_address"):
        parse_addresses(" , ")


def test_engines_must_serve_the_same_model():
    a = ModelInfo("m", vocab_size=100, max_context_len=64, num_slots=10, max_rows=2)
    b = ModelInfo("m", vocab_size=100, max_context_len=64, num_slots=99, max_rows=8)
    assert check_same_model(["x", "y"], [a, b]) is a  # capacity may differ
    c = ModelInfo("m", vocab_size=100, max_context_len=128, num_slots=10, max_rows=2)
    with pytest.raises(RuntimeError, match="disagree on max_context_len.*y has 128"):
        check_same_model(["x", "y"], [a, c])


class FakeLink:
    ready = True
    down_reason = ""

    def __init__(self) -> None:
        self.added: list[list[str]] = []
        self.aborted: list[str] = []

    def add(self, reqs):
        self.added.append([r.rid for r in reqs])

    def abort(self, rids):
        self.aborted += rids

    def refused_draining(self):
        self.ready = False
        self.on_change()


def _req(rid: str, ids: list[int]) -> GenerateInput:
    return GenerateInput(rid, ids, SamplingParams(max_new_tokens=4))


def _pool_with_fake_links() -> SchedulerPool:
    async def build() -> SchedulerPool:
        pool = SchedulerPool("a:1,b:2", "t")  # grpc.aio channels want a running loop
        await pool.close()
        pool.links = [FakeLink(), FakeLink()]  # type: ignore[list-item]
        for link in pool.links:
            link.on_change = pool._link_changed
        return pool

    return asyncio.run(build())


def test_pool_keeps_samples_together_and_aborts_follow_the_request():
    pool = _pool_with_fake_links()
    pool.add([_req("x#0", LONG_A), _req("x#1", LONG_A)])
    pool.add([_req("y", LONG_B)])
    x_link = pool.owner["x#0"]
    assert pool.owner["x#1"] == x_link and pool.owner["y"] == 1 - x_link
    assert pool.links[x_link].added == [["x#0", "x#1"]]
    assert pool.router.in_flight[x_link] == 2
    pool.abort(["y", "x#1", "gone"])
    assert pool.links[1 - x_link].aborted == ["y"]
    assert pool.links[x_link].aborted == ["x#1"]
    assert pool.rids_of(x_link) == ["x#0"]
    assert pool.router.in_flight[x_link] == 1 and pool.router.in_flight[1 - x_link] == 0


class FakeManager:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.outputs: list[str] = []

    def on_outputs(self, outputs):
        self.outputs += [o.rid for o in outputs]

    def fail(self, rids, message):
        self.failed += rids


def test_a_broken_link_fails_only_its_own_requests():
    from radixserve.common.outputs import FinishReason, RequestOutput
    from radixserve.tokenizer.pool import _LinkSink

    pool = _pool_with_fake_links()
    manager = FakeManager()
    pool.add([_req("p", LONG_A)])
    pool.add([_req("q", LONG_B)])
    p_link = pool.owner["p"]
    _LinkSink(pool, 1 - p_link, manager).fail_all("scheduler unavailable")  # type: ignore[arg-type]
    assert manager.failed == ["q"] and list(pool.owner) == ["p"]
    done = RequestOutput("p", [1], finish_reason=FinishReason.length())
    _LinkSink(pool, p_link, manager).on_outputs([done])
    assert manager.outputs == ["p"] and pool.owner == {} and pool.router.in_flight == [0, 0]


def test_a_drain_refusal_sends_the_request_to_the_other_engine():
    from radixserve.common.outputs import FinishReason, RequestOutput
    from radixserve.tokenizer.pool import _LinkSink

    pool = _pool_with_fake_links()
    manager = FakeManager()
    pool.add([_req("r", LONG_A)])
    a = pool.owner["r"]

    def refusal() -> RequestOutput:
        return RequestOutput("r", [], finish_reason=FinishReason.error("draining", True))

    _LinkSink(pool, a, manager).on_outputs([refusal()])  # type: ignore[arg-type]
    assert manager.outputs == [] and pool.rerouted == 1
    assert pool.owner == {"r": 1 - a} and pool.links[1 - a].added == [["r"]]
    assert pool.router.in_flight[a] == 0 and pool.router.in_flight[1 - a] == 1
    assert pool.router.down == {a}  # out of routing before any readiness probe
    # The other engine drains too: no engine left, so the refusal reaches the client.
    _LinkSink(pool, 1 - a, manager).on_outputs([refusal()])  # type: ignore[arg-type]
    assert manager.outputs == ["r"] and pool.owner == {} and pool.router.in_flight == [0, 0]
    assert pool.rerouted == 1 and not pool.ready


def test_news_of_a_request_ends_its_chance_to_be_re_routed():
    from radixserve.common.outputs import FinishReason, RequestOutput
    from radixserve.tokenizer.pool import _LinkSink

    pool = _pool_with_fake_links()
    manager = FakeManager()
    pool.add([_req("s", LONG_A)])
    a = pool.owner["s"]
    sink = _LinkSink(pool, a, manager)
    sink.on_outputs([RequestOutput("s", [5])])  # type: ignore[arg-type]
    assert pool.unstarted == {}
    late = RequestOutput("s", [], finish_reason=FinishReason.error("x", retry_elsewhere=True))
    sink.on_outputs([late])  # type: ignore[arg-type]
    assert manager.outputs == ["s", "s"] and pool.rerouted == 0 and pool.owner == {}
