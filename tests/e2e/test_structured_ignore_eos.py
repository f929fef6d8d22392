"""ignore_eos under a grammar, on the embedded SmolLM2 through the real `openai` client: once the
grammar is complete the request ends with ``stop``, it does not emit EOS until max_tokens."""

from __future__ import annotations

import json

import openai
import pytest


@pytest.mark.parametrize("stream", [False, True])
def test_regex_with_ignore_eos_stops_at_the_grammars_end(
    oai: openai.OpenAI, model_name: str, stream: bool
) -> None:
    kw = {"model": model_name, "prompt": "Is the sky blue? Answer:", "max_tokens": 50}
    kw["extra_body"] = {"regex": "(yes|no)", "ignore_eos": True}
    if stream:
        parts, reason = [], None
        for ev in oai.completions.create(**kw, stream=True):
            if ev.choices:
                parts.append(ev.choices[0].text)
                reason = ev.choices[0].finish_reason or reason
        text = "".join(parts)
    else:
        out = oai.completions.create(**kw)
        text, reason = out.choices[0].text, out.choices[0].finish_reason
        assert out.usage.completion_tokens <= 3  # the answer and one end token, not 50
    assert (text, reason) in (("yes", "stop"), ("no", "stop"))


def test_json_schema_with_ignore_eos_stops(oai: openai.OpenAI, model_name: str) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    out = oai.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "Is water wet? Answer as JSON."}],
        max_tokens=50,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        extra_body={"ignore_eos": True},
    )
    choice = out.choices[0]
    assert choice.finish_reason == "stop", choice
    assert isinstance(json.loads(choice.message.content)["ok"], bool)
    assert out.usage.completion_tokens < 50
