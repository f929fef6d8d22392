"""Tool-call formats: detection from the chat template, parsing, grammars, tools in the prompt."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radixserve.common.grammars import check_constraint
from radixserve.common.wire import tokenizer as pbchat
from radixserve.tokenizer.chat_template import render_chat
from radixserve.tokenizer.tool_calls import (
    ToolParser,
    ToolRequest,
    call_grammar,
    detect_format,
    plan,
)
from radixserve.v1 import tokenizer_pb2

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
        ("hermes", '<tool_call>{"arguments": x}</tool_call>'
                   '<tool_call>{"name": "f", "arguments": {}}</tool_call>', ["f"]),
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
@pytest.mark.parametrize("max_calls", [1, 2])
def test_call_grammars_compile(fmt: str, max_calls: int) -> None:
    check_constraint(call_grammar(fmt, [FN, {**FN, "name": "g"}], max_calls))


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


# ---- incremental streaming: pieces of every chunking join to the whole answer's parse ----------

STREAM_TEXTS = [
    (
        "hermes",
        'Let me check. <tool_call>\n{"name": "f", "arguments": {"x": 1, "s": "a\\"}{b", "l": [1, '
        '2.5e3, true, null]}}\n</tool_call>\n<tool_call>\n{"arguments": {"y": "é 😀"}, '
        '"name": "g"}\n</tool_call>',
    ),
    (
        "smollm2",
        '<tool_call>[{"name": "f", "arguments": {"x": 3, "nested": {"k": [{"a": "}"}]}}}, '
        '{"name": "unknown", "arguments": {}}, {"name": "g"}]</tool_call>',
    ),
    ("llama3_json", '<|python_tag|>{"name": "f", "parameters": {"x": 4, "y": -0.5}}'),
    ("llama3_json", ' {"parameters": {"q": "a b"}, "name": "g"}'),
    ("hermes", "plain text, <tool with no call in it"),
    (
        "hermes",
        '<tool_call>{"arguments": nonsense}</tool_call><tool_call>{"name": "g", "arguments": '
        '{"a": 1}}</tool_call>',
    ),
]


def _stream(parser: ToolParser, pieces: list[str]) -> tuple[str, list[dict]]:
    """Feeds ``pieces`` as a stream; returns the content and the deltas, checked for shape."""
    stream = parser.stream()
    content, deltas = "", []
    for i, piece in enumerate(pieces):
        out = stream.feed(piece, final=i == len(pieces) - 1)
        content += out.content
        deltas += out.tool_calls
    return content, deltas


def _join(deltas: list[dict]) -> list[dict]:
    calls: list[dict] = []
    for d in deltas:
        if d["index"] == len(calls):  # a call's first delta: id, type, name, arguments so far
            assert set(d) == {"index", "id", "type", "function"} and d["id"].startswith("call_")
            calls.append({"id": d["id"], "name": d["function"]["name"], "arguments": ""})
        else:  # later ones: only index and a non-empty piece of the arguments
            assert set(d) == {"index", "function"} and set(d["function"]) == {"arguments"}
            assert d["function"]["arguments"] and d["index"] < len(calls)
        calls[d["index"]]["arguments"] += d["function"]["arguments"]
    return calls


def _check_stream(fmt: str, text: str, pieces: list[str]) -> None:
    parser = ToolParser(fmt, {"f", "g"})
    want_content, want = parser.parse(text)
    content, deltas = _stream(parser, pieces)
    calls = _join(deltas)
    assert [(c["name"], c["arguments"]) for c in calls] == [
        (c["function"]["name"], c["function"]["arguments"]) for c in want
    ]
    for c in calls:
        json.loads(c["arguments"])
    assert (content.strip() if want else content) == want_content


@pytest.mark.parametrize(("fmt", "text"), STREAM_TEXTS)
def test_stream_every_split_point(fmt: str, text: str) -> None:
    for cut in range(len(text) + 1):
        _check_stream(fmt, text, [text[:cut], text[cut:]])
    _check_stream(fmt, text, list(text))  # one character at a time


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_stream_random_chunkings(data: st.DataObject) -> None:
    fmt, text = data.draw(st.sampled_from(STREAM_TEXTS))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    _check_stream(fmt, text, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)])


def test_stream_sends_arguments_in_pieces_and_content_first() -> None:
    fmt, text = STREAM_TEXTS[0]
    stream, content_before_calls = ToolParser(fmt, {"f", "g"}).stream(), ""
    for ch in text:
        out = stream.feed(ch)
        if out.tool_calls:
            break
        content_before_calls += out.content
    assert content_before_calls == "Let me check. "  # streamed as it came, before any call
    content, deltas = _stream(ToolParser(fmt, {"f", "g"}), [*text, ""])
    first_call = [d for d in deltas if d["index"] == 0]
    assert len(first_call) > 10 and first_call[0]["function"]["name"] == "f"
    assert [d["index"] for d in deltas] == sorted(d["index"] for d in deltas)  # in order


def test_a_cut_call_is_the_same_streamed_or_not() -> None:
    # Issue 25 item 1: a call cut by max_tokens was raw markup in a whole answer's content while
    # a stream sent it as a call. Now both return the call with the arguments written so far
    # and no markup as content.
    parser = ToolParser("hermes", {"f"})
    text = '<tool_call>{"name": "f", "arguments": {"x": [1, 2'
    content, deltas = _stream(parser, [text[:20], text[20:], ""])
    assert _join(deltas)[0]["arguments"] == '{"x": [1, 2' and content == ""
    whole, calls = parser.parse(text)
    assert whole == "" and [c["function"]["arguments"] for c in calls] == ['{"x": [1, 2']
    for fmt in ("hermes", "smollm2"):
        for cut in ('<tool_call>[{"na', 'Hi <tool_call>{"name": "f"'[:-4]):
            head = cut[: cut.index("<")]
            assert ToolParser(fmt, {"f"}).parse(cut) == (head, [])
            assert _stream(ToolParser(fmt, {"f"}), [cut[:5], cut[5:], ""]) == (head, [])
    for bad in ('{"x": }', '{"x": 1,}', '{"x" 1}', "[1 2]"):
        broken = f'<tool_call>{{"name": "f", "arguments": {bad}}}</tool_call>'
        assert parser.parse(broken) == ("", []), bad  # no markup as content (issue 25)


def test_forced_calls_have_no_content_and_parallel_false_keeps_one() -> None:
    forced = ToolParser("smollm2", {"f"}, max_calls=2, forced=True)
    assert forced.parse("<tool_") == ("", [])
    two = '<tool_call>[{"name": "f", "arguments": {}}, {"name": "f", "arguments": {"x": 1}}]'
    assert len(ToolParser("smollm2", {"f"}).parse(two)[1]) == 2
    one = ToolParser("smollm2", {"f"}, max_calls=1)
    assert [c["function"]["arguments"] for c in one.parse(two)[1]] == ["{}"]
    assert {d["index"] for d in _stream(one, [two[:30], two[30:], ""])[1]} == {0}
    body = ToolRequest([{"role": "user", "content": "x"}], [{"type": "function", "function": FN}])
    body.parallel_tool_calls = False
    assert plan(body, None).parser.max_calls == 1  # type: ignore[union-attr]


def test_grpc_chat_input_round_trips_to_the_openai_shapes() -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": FN}}
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    ]
    named = {"type": "function", "function": {"name": "f"}}
    for choice, want in [("required", "required"), ("f", named), (named, named), (None, None)]:
        pb = pbchat.chat_input_pb(messages, [tool], choice, parallel_tool_calls=False)
        pb = tokenizer_pb2.ChatInput.FromString(pb.SerializeToString())
        assert pbchat.messages_from_pb(pb) == messages
        assert pbchat.tools_from_pb(pb) == [tool]
        assert pbchat.tool_choice_from_pb(pb) == want
        assert pb.HasField("parallel_tool_calls") and not pb.parallel_tool_calls
    # SmolLM2's template ignores tool_calls: the earlier call is written into the content.
    body = ToolRequest(pbchat.messages_from_pb(pb), pbchat.tools_from_pb(pb), "none")
    plan(body, object(), "chat.")
    inlined = '<tool_call>[{"name": "f", "arguments": {"x": 1}}]</tool_call>'
    assert body.messages[1]["content"] == inlined
