"""The tokenizer's RequestManager and PromptBuilder with the embedded vocabulary, no network."""

from __future__ import annotations

import asyncio

import pytest

from radixserve.common.errors import InvalidArgument
from radixserve.common.model_source import resolve_model
from radixserve.common.outputs import FinishReason, RequestOutput
from radixserve.common.types import ModelInfo, SamplingParams
from radixserve.common.vocab.loading import load_tokenizer
from radixserve.tokenizer.manager import RequestManager
from radixserve.tokenizer.prompts import PromptBuilder

INFO = ModelInfo("m", vocab_size=49152, max_context_len=64, num_slots=100, max_rows=4)


class FakeUpstream:
    """The scheduler link as the manager sees it; ``fail`` makes every add raise it."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.added: list[str] = []
        self.aborted: list[str] = []

    def add(self, reqs):
        if self.fail is not None:
            raise self.fail
        self.added += [r.rid for r in reqs]

    def abort(self, rids):
        self.aborted += list(rids)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model(None))


@pytest.fixture
def builder(tokenizer):
    return PromptBuilder(tokenizer, INFO)


def run_with_outputs(manager, req, outputs_per_step, read_every_step=True):
    """Feeds scheduler outputs while a reader consumes; returns the chunks the reader got."""

    async def go():
        chunks = []
        gen = manager.generate(req)
        reader = asyncio.ensure_future(_read(gen, chunks, read_every_step))
        await asyncio.sleep(0)
        for outs in outputs_per_step:
            manager.on_outputs(outs)
            if read_every_step:
                await asyncio.sleep(0)
        await asyncio.wait_for(reader, 5)
        return chunks

    return asyncio.run(go())


async def _read(gen, chunks, eager):
    if not eager:
        await asyncio.sleep(0.05)
    async for chunk in gen:
        chunks.append(chunk)


def test_stop_string_across_tokens_is_trimmed_and_aborts_upstream(tokenizer, builder):
    ids = tokenizer.encode("Paris is lovely. THE END and more", add_special_tokens=False)
    up = FakeUpstream()
    manager = RequestManager(tokenizer, up)
    req = builder.build(
        tokenizer.encode("Hi"), SamplingParams(max_new_tokens=40), stop=["THE END"], rid="r1"
    )
    steps = [[RequestOutput("r1", [t], completion_tokens=i + 1)] for i, t in enumerate(ids)]
    chunks = run_with_outputs(manager, req, steps)
    text = "".join(c.text for c in chunks)
    assert text == "Paris is lovely. "
    assert chunks[-1].finish_reason == "stop"
    assert up.added == ["r1"] and "r1" in up.aborted
    assert manager.num_running == 0


def test_slow_reader_gets_coalesced_chunks(tokenizer, builder):
    ids = tokenizer.encode("one two three four five six", add_special_tokens=False)
    manager = RequestManager(tokenizer, FakeUpstream())
    req = builder.build([1, 2, 3], SamplingParams(max_new_tokens=len(ids)), rid="r2")
    steps = [[RequestOutput("r2", [t])] for t in ids]
    steps[-1][0].finish_reason = FinishReason.length()
    chunks = run_with_outputs(manager, req, steps, read_every_step=False)
    assert len(chunks) == 1  # everything arrived before the reader looked
    assert chunks[0].text == "one two three four five six"
    assert chunks[0].token_ids == ids and chunks[0].finish_reason == "length"


def test_client_abort_and_link_failure(tokenizer, builder):
    up = FakeUpstream()
    manager = RequestManager(tokenizer, up)

    async def go():
        a = manager.generate(builder.build([5, 6], SamplingParams(max_new_tokens=8), rid="a"))
        b = manager.generate(builder.build([5, 6], SamplingParams(max_new_tokens=8), rid="b"))
        task_a = asyncio.ensure_future(_collect(a))
        task_b = asyncio.ensure_future(_collect(b))
        await asyncio.sleep(0)
        assert manager.abort("a") and not manager.abort("nope")
        manager.fail_all("scheduler unavailable")
        return await task_a, await task_b

    chunks_a, chunks_b = asyncio.run(go())
    assert chunks_a[-1].finish_reason == "abort"
    assert chunks_b[-1].finish_reason == "error" and "unavailable" in chunks_b[-1].error
    assert up.aborted == ["a"] and manager.num_running == 0


async def _collect(gen):
    return [c async for c in gen]


@pytest.mark.parametrize(
    "ids, sampling, kwargs, field",
    [
        ([], SamplingParams(max_new_tokens=8), {}, "prompt"),
        ([1] * 64, SamplingParams(max_new_tokens=8), {}, "prompt"),
        ([1, 49152], SamplingParams(max_new_tokens=8), {}, "prompt"),
        ([1], SamplingParams(temperature=-1, max_new_tokens=8), {}, "temperature"),
        ([1], SamplingParams(top_p=0, max_new_tokens=8), {}, "top_p"),
        ([1], SamplingParams(max_new_tokens=0), {}, "max_new_tokens"),
        ([1] * 10, SamplingParams(max_new_tokens=60), {}, "max_tokens"),
        ([1], SamplingParams(max_new_tokens=8), {"stop": [""]}, "stop"),
    ],
)
def test_builder_rejects_naming_the_field(builder, ids, sampling, kwargs, field):
    with pytest.raises(InvalidArgument) as info:
        builder.build(ids, sampling, **kwargs)
    assert str(info.value).startswith(field)


def test_unset_max_tokens_is_cut_to_the_context(builder):
    req = builder.build([1] * 10, SamplingParams(max_new_tokens=500), max_tokens_given=False)
    assert req.sampling.max_new_tokens == 54


def test_chat_prompt_uses_the_template(builder, tokenizer):
    ids = builder.ids_from_chat([{"role": "user", "content": "Hi"}])
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    with pytest.raises(InvalidArgument, match="role"):
        builder.ids_from_chat([{"role": "wizard", "content": "Hi"}])


def test_stop_strings_wait_for_min_tokens(tokenizer, builder):
    ids = tokenizer.encode("Yes. Yes. Yes. Done", add_special_tokens=False)
    up = FakeUpstream()
    manager = RequestManager(tokenizer, up)
    sp = SamplingParams(max_new_tokens=40, min_new_tokens=4)
    req = builder.build(tokenizer.encode("Hi"), sp, stop=["Yes"], rid="m1")
    steps = [[RequestOutput("m1", [t], completion_tokens=i + 1)] for i, t in enumerate(ids)]
    text = "".join(c.text for c in run_with_outputs(manager, req, steps))
    first_four = tokenizer.decode(ids[:4])
    assert text.startswith(first_four) and text.count("Yes") >= 2  # matched only after 4 tokens
    assert "m1" in up.aborted
