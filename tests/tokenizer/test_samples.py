"""n > 1 samples and the stream interval in the RequestManager, no network."""

from __future__ import annotations

import asyncio

import pytest

from radixserve.common.errors import InvalidArgument
from radixserve.common.model_source import resolve_model
from radixserve.common.outputs import FinishKind, FinishReason, RequestOutput
from radixserve.common.types import SamplingParams
from radixserve.common.vocab.loading import load_tokenizer
from radixserve.tokenizer.manager import RequestManager
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.tokenizer.samples import MAX_N, check_n, expand, interleave


class FakeUpstream:
    def __init__(self) -> None:
        self.added: list[list[str]] = []
        self.aborted: list[str] = []

    def add(self, reqs):
        self.added.append([r.rid for r in reqs])

    def abort(self, rids):
        self.aborted += list(rids)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model(None))


def _req(rid: str = "r", seed: int | None = None, max_new: int = 16) -> GenerateInput:
    return GenerateInput(rid, [1, 2, 3], SamplingParams(max_new_tokens=max_new, seed=seed))


def test_expand_gives_indexed_rids_and_consecutive_seeds():
    req = _req(seed=2**64 - 1)
    samples = expand(req, 3)
    assert [s.rid for s in samples] == ["r#0", "r#1", "r#2"]
    assert [s.sampling.seed for s in samples] == [2**64 - 1, 0, 1]  # wraps within uint64
    assert all(s.input_ids == req.input_ids for s in samples)
    assert expand(req, 1) == [req]
    assert [s.sampling.seed for s in expand(_req(), 2)] == [None, None]


@pytest.mark.parametrize("n", [0, -1, MAX_N + 1, True, 2.0])
def test_check_n_names_the_field(n):
    with pytest.raises(InvalidArgument, match=r"^n: must be an integer in \[1, 16\]"):
        check_n(n)


def _outputs(tokenizer, rid: str, text: str, finish: str = "length") -> list[list[RequestOutput]]:
    ids = tokenizer.encode(text, add_special_tokens=False)
    steps = [[RequestOutput(rid, [t], completion_tokens=i + 1)] for i, t in enumerate(ids)]
    steps[-1][0].finish_reason = FinishReason(FinishKind(finish))
    return steps


def test_samples_travel_together_and_interleave_with_their_index(tokenizer):
    up = FakeUpstream()
    manager = RequestManager(tokenizer, up)

    async def go():
        streams = manager.generate_many(expand(_req(), 2))
        reader = asyncio.ensure_future(_collect(interleave(streams)))
        await asyncio.sleep(0)
        a, b = _outputs(tokenizer, "r#0", "one two"), _outputs(tokenizer, "r#1", "three four")
        for step_a, step_b in zip(a, b, strict=False):
            manager.on_outputs(step_a + step_b)
            await asyncio.sleep(0)
        return await asyncio.wait_for(reader, 5)

    chunks = asyncio.run(go())
    assert up.added == [["r#0", "r#1"]]  # one upstream message: one scheduler, one step
    texts = {i: "".join(c.text for c in chunks if c.index == i) for i in (0, 1)}
    assert texts == {0: "one two", 1: "three four"}
    assert sorted(c.index for c in chunks if c.finish_reason) == [0, 1]
    assert manager.num_running == 0 and up.aborted == []


def test_closing_an_interleaved_stream_aborts_every_sample_and_abort_by_client_rid(tokenizer):
    up = FakeUpstream()
    manager = RequestManager(tokenizer, up)

    async def go():
        merged = interleave(manager.generate_many(expand(_req("x"), 3)))
        manager.on_outputs([RequestOutput("x#1", [42])])
        first = await merged.__anext__()
        await merged.aclose()
        other = manager.generate_many(expand(_req("y"), 2))
        found = manager.abort("y")
        ends = [await _collect(s) for s in other]
        return first, found, ends

    first, found, ends = asyncio.run(go())
    assert first.index == 1
    assert sorted(up.aborted) == ["x#0", "x#1", "x#2", "y#0", "y#1"]
    assert found and all(e[-1].finish_reason == "abort" for e in ends)
    assert manager.num_running == 0


def test_a_duplicate_rid_fails_before_anything_is_sent(tokenizer):
    up = FakeUpstream()
    manager = RequestManager(tokenizer, up)
    with pytest.raises(ValueError, match="already running"):
        manager.generate_many([_req("d"), _req("d")])
    assert up.added == [] and manager.num_running == 0


def test_stream_interval_holds_chunks_until_enough_tokens(tokenizer):
    manager = RequestManager(tokenizer, FakeUpstream(), stream_interval=3)
    steps = _outputs(tokenizer, "s", "a b c d e f g h")  # 8 tokens, one per step

    async def go():
        gen = manager.generate(_req("s"))
        reader = asyncio.ensure_future(_collect(gen))
        for step in steps:
            manager.on_outputs(step)
            for _ in range(3):  # an eager reader: it would take every token if woken
                await asyncio.sleep(0)
        return await asyncio.wait_for(reader, 5)

    chunks = asyncio.run(go())
    assert [len(c.token_ids) for c in chunks] == [3, 3, 2]  # the last one: finished early
    assert "".join(c.text for c in chunks) == "a b c d e f g h"
    assert chunks[-1].finish_reason == "length"


def test_stream_interval_must_be_positive(tokenizer):
    with pytest.raises(ValueError, match="stream_interval"):
        RequestManager(tokenizer, FakeUpstream(), stream_interval=0)


async def _collect(gen):
    return [c async for c in gen]
