"""The SSE fast path (``Format.event``) encodes exactly what the dict path (``Format.chunk`` +
``json.dumps``) does, byte for byte, for chat and completions, with and without usage."""

from __future__ import annotations

import json

import pytest

from radixserve.common.types import TopLogprobs
from radixserve.common.vocab.char_vocab import CharTokenizer
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.openai import render as oai

TEXTS = ["a", 'say "hi"\\', "line\nbreak\ttab", "héllo 日本 🤗", "\x00\x1f\u2028\u2029", "</s>"]


def _reference(payload: dict | None) -> str | None:
    """How http_api encoded every event before the fast path."""
    if payload is None:
        return None
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _chunks() -> list[Chunk]:
    out = [Chunk(text=t, token_ids=[5], index=i % 3) for i, t in enumerate(TEXTS)]
    out.append(Chunk(text="", token_ids=[6]))  # nothing to tell (held back)
    out.append(Chunk(text="end", token_ids=[7], finish_reason="stop", completion_tokens=9))
    out.append(Chunk(text="", token_ids=[], finish_reason="length", index=1))
    out.append(Chunk(text="x", token_ids=[8], finish_reason="weird", index=2))  # -> abort
    return out


def _pair(kind: type[oai.Format], **kwargs) -> tuple[oai.Format, oai.Format]:
    tok = CharTokenizer(512)
    fast, ref = kind("m-1", tok, **kwargs), kind("m-1", tok, **kwargs)
    ref.id, ref.created = fast.id, fast.created
    return fast, ref


@pytest.mark.parametrize("kind", [oai.ChatFormat, oai.CompletionFormat])
@pytest.mark.parametrize("with_usage", [False, True])
@pytest.mark.parametrize("logprobs", [False, True])
def test_event_matches_the_dict_path(kind: type[oai.Format], with_usage: bool, logprobs: bool):
    fast, ref = _pair(kind, logprobs=logprobs, top=2 if logprobs else 0)
    sent = 0
    for chunk in _chunks():
        if logprobs and chunk.token_ids:
            chunk.logprobs = [-0.5] * len(chunk.token_ids)
            chunk.top_logprobs = [TopLogprobs((5, 9), (-0.5, -1.25))] * len(chunk.token_ids)
        got = fast.event(chunk, with_usage)
        assert got == _reference(ref.chunk(chunk, with_usage))
        sent += got is not None
    # Only the empty chunk says nothing, unless it carries a logprob.
    assert sent == len(_chunks()) - (0 if logprobs else 1)


def test_completions_echo_goes_through_the_dict_path() -> None:
    fast, ref = _pair(oai.CompletionFormat, logprobs=False)
    for fmt in (fast, ref):
        fmt.echo, fmt.per_prompt = ["prompt one", "prompt two"], 1
    for chunk in (Chunk(text="a", index=0), Chunk(text="b", index=1), Chunk(text="c", index=0)):
        assert fast.event(chunk, False) == _reference(ref.chunk(chunk, False))


def test_chat_event_is_what_the_openai_shape_says() -> None:
    fmt = oai.ChatFormat("m-1", CharTokenizer(512), logprobs=False)
    event = fmt.event(Chunk(text='é"', index=1), with_usage=True)
    assert event is not None and event.startswith("data: ") and event.endswith("\n\n")
    body = json.loads(event[len("data: ") :])
    assert body == {
        "id": fmt.id,
        "object": "chat.completion.chunk",
        "created": fmt.created,
        "model": "m-1",
        "choices": [
            {"index": 1, "delta": {"content": 'é"'}, "logprobs": None, "finish_reason": None}
        ],
        "usage": None,
    }
