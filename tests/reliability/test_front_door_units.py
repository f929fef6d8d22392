"""The front door's fault paths without servers: nothing stays registered on any refusal, the
concurrency bound, draining, the per-request timeout, and wire-range checks naming the field."""

from __future__ import annotations

import asyncio

import pytest

from radixserve.common.errors import InvalidArgument, Overloaded, Unavailable
from radixserve.common.model_source import resolve_model
from radixserve.common.types import SamplingParams
from radixserve.common.vocab.loading import load_tokenizer
from radixserve.tokenizer.clients import SchedulerLink, encode_add
from radixserve.tokenizer.limits import Limits
from radixserve.tokenizer.manager import RequestManager
from radixserve.tokenizer.prompts import GenerateInput
from tests.tokenizer.test_manager import FakeUpstream


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model(None))


def _req(rid: str = "r", **sampling) -> GenerateInput:
    return GenerateInput(rid, [1, 2, 3], SamplingParams(max_new_tokens=4, **sampling))


@pytest.mark.parametrize(
    "error", [InvalidArgument("out of range", "top_k"), Unavailable("scheduler down")]
)
def test_a_request_refused_upstream_is_forgotten(tokenizer, error):
    manager = RequestManager(tokenizer, FakeUpstream(fail=error))
    with pytest.raises(type(error)):
        manager.generate(_req())
    assert manager.num_running == 0


def test_concurrency_bound_and_draining(tokenizer):
    async def go() -> None:
        manager = RequestManager(tokenizer, FakeUpstream(), max_running=2)
        manager.generate_many([_req("a#0"), _req("a#1")])
        with pytest.raises(Overloaded):
            manager.generate(_req("b"))
        assert manager.num_running == 2
        manager.draining = True
        manager.max_running = 0
        with pytest.raises(Unavailable):
            manager.generate(_req("c"))

    asyncio.run(go())


def test_limits_name_the_field():
    limits = Limits(max_stop_strings=2, max_stop_chars=3, max_input_tokens=2)
    for req, field in (
        (GenerateInput("r", [1], SamplingParams(), stop=("a", "b", "c")), "stop"),
        (GenerateInput("r", [1], SamplingParams(), stop=("abcd",)), "stop"),
        (GenerateInput("r", [1, 2, 3], SamplingParams()), "prompt"),
    ):
        with pytest.raises(InvalidArgument) as exc:
            limits.check(req)
        assert exc.value.field == field


def test_timeout_aborts_upstream_and_says_why(tokenizer):
    async def go() -> list:
        upstream = FakeUpstream()
        manager = RequestManager(tokenizer, upstream, timeout=0.1)
        chunks = [c async for c in manager.generate(_req("slow"))]
        return chunks, upstream, manager

    chunks, upstream, manager = asyncio.run(go())
    assert chunks[-1].finish_reason == "abort" and "request_timeout_seconds" in chunks[-1].error
    assert upstream.aborted == ["slow"] and manager.num_running == 0


@pytest.mark.parametrize(
    ("sampling", "field"),
    [({"top_k": 2**31}, "top_k"), ({"stop_token_ids": (2**31,)}, "stop_token_ids")],
)
def test_wire_range_errors_name_the_field(sampling, field):
    with pytest.raises(InvalidArgument) as exc:
        encode_add([_req(**sampling)])
    assert exc.value.field == field


def test_a_down_link_refuses_instead_of_queueing():
    async def go() -> None:
        link = SchedulerLink("127.0.0.1:1", "t")
        with pytest.raises(Unavailable):
            link.add([_req()])
        assert link._outbox.empty()  # nothing kept to run later (no ghost)
        await link.close()

    asyncio.run(go())
