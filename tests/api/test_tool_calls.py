"""Tool-call formats: detection from the chat template, parsing, grammars, tools in the prompt."""

from __future__ import annotations

import json

import pytest

from radixserve.services.common.grammars import check_constraint
from radixserve.services.tokenizer.chat_template import render_chat
from radixserve.services.tokenizer.tool_calls import ToolParser, call_grammar, detect_format

HERMES_TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>"
    "Answer with <tool_call>{}</tool_call>\n{% endif %}"
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
)
LLAMA3_TEMPLATE = "{% if tools %}{{ tools | tojson }}{% endif %}<|eot_id|><|python_tag|>"
FN = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}


def test_detect_format() -> None:
    assert detect_format(HERMES_TEMPLATE) == "hermes"
    assert detect_format(LLAMA3_TEMPLATE) == "llama3_json"
    assert detect_format("{{ messages }}") == "smollm2"  # renders no tools: SmolLM2's prompt
    assert detect_format(None) == "smollm2"


@pytest.mark.parametrize(
    ("fmt", "text", "names"),
    [
        ("hermes", 'Hi<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>', ["f"]),
        ("hermes", '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
                   '<tool_call>{"name": "f", "arguments": {"x": 2}}</tool_call>', ["f", "f"]),
        ("smollm2", '<tool_call>[{"name": "f", "arguments": {"x": 3}}]</tool_call>', ["f"]),
        ("llama3_json", '<|python_tag|>{"name": "f", "parameters": {"x": 4}}', ["f"]),
        ("hermes", "no call here", []),
        ("hermes", '<tool_call>{"name": "unknown", "arguments": {}}</tool_call>', []),
    ],
)  # fmt: skip
def test_parse(fmt: str, text: str, names: list[str]) -> None:
    content, calls = ToolParser(fmt, {"f"}).parse(text)
    assert [c["function"]["name"] for c in calls] == names
    for c in calls:
        assert c["type"] == "function" and c["id"].startswith("call_")
        assert isinstance(json.loads(c["function"]["arguments"]), dict)
    if not names:
        assert content == text


@pytest.mark.parametrize("fmt", ["hermes", "llama3_json", "smollm2"])
@pytest.mark.parametrize("single", [True, False])
def test_call_grammars_compile(fmt: str, single: bool) -> None:
    check_constraint(call_grammar(fmt, [FN, {**FN, "name": "g"}], single))


def test_tools_reach_the_template() -> None:
    tools = [{"type": "function", "function": FN}]
    with_tools = render_chat([{"role": "user", "content": "x"}], HERMES_TEMPLATE, tools=tools)
    without = render_chat([{"role": "user", "content": "x"}], HERMES_TEMPLATE)
    assert '"name": "f"' in with_tools and "<tools>" not in without
    dev = render_chat([{"role": "developer", "content": "be brief"}], HERMES_TEMPLATE)
    assert dev.startswith("system: be brief")


def test_streamable_holds_back_only_possible_calls() -> None:
    hermes = ToolParser("hermes", {"f"})
    assert hermes.streamable("Hello there") == len("Hello there")
    assert hermes.streamable("Hello <tool") == len("Hello ")  # may become a marker
    assert hermes.streamable("Hi <tool_call>{") == len("Hi ")
    llama = ToolParser("llama3_json", {"f"})
    assert llama.streamable(" {") == 0 and llama.streamable("") == 0
    assert llama.streamable("Paris is sunny") == len("Paris is sunny")
