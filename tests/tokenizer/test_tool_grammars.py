"""What the tool-call and JSON grammars admit (issue 25), checked with llguidance on the embedded
model's vocabulary: compact JSON, a bounded number of calls, bounded values, closed objects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from radixserve.common.grammars import MAX_ITEMS, MAX_STRING_LENGTH, bound_schema, grammar_text
from radixserve.common.model_source import resolve_model
from radixserve.common.types import Constraint
from radixserve.common.vocab.loading import load_tokenizer
from radixserve.tokenizer.tool_calls import ToolRequest, call_grammar, plan

FN = {
    "name": "f",
    "parameters": {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "required": ["x"],
    },
}


@pytest.fixture(scope="module")
def admits() -> Any:
    import llguidance

    from radixserve.worker.grammar import load_ll_tokenizer

    source = resolve_model(None)
    tok = load_tokenizer(source)
    ll = load_ll_tokenizer(source, tok.vocab_size, tok.eos_token_ids)

    def check(constraint: Constraint, text: str) -> bool:
        """Whether ``text`` is a whole sentence of the grammar."""
        matcher = llguidance.LLMatcher(ll, grammar_text(constraint.kind, constraint.value))
        matcher.consume_tokens(tok.encode(text, add_special_tokens=False))
        return not matcher.is_error() and matcher.is_accepting()

    return check


def test_call_json_is_compact(admits: Any) -> None:
    one = call_grammar("smollm2", [FN], 1)
    assert admits(one, '<tool_call>[{"name": "f", "arguments": {"x": 1}}]</tool_call>')
    assert not admits(one, '<tool_call>[{"name": "f", "arguments": {"x":  1}}]</tool_call>')
    assert not admits(one, '<tool_call>[\n{"name": "f", "arguments": {"x": 1}}]</tool_call>')
    hermes = call_grammar("hermes", [FN], 1)
    assert admits(hermes, '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>')
    assert not admits(hermes, '<tool_call>\n{ "name": "f", "arguments": {"x": 1}}\n</tool_call>')


def test_calls_are_bounded(admits: Any) -> None:
    call = '{"name": "f", "arguments": {"x": 1}}'
    two = call_grammar("smollm2", [FN], 2)
    assert admits(two, f"<tool_call>[{call}]</tool_call>")  # may stop after the first
    assert admits(two, f"<tool_call>[{call}, {call}]</tool_call>")
    assert not admits(two, f"<tool_call>[{call}, {call}, {call}]</tool_call>")
    hermes = call_grammar("hermes", [FN], 2)
    block = f"<tool_call>\n{call}\n</tool_call>"
    assert admits(hermes, block) and admits(hermes, f"{block}\n{block}")
    assert not admits(hermes, f"{block}\n{block}\n{block}")


def test_required_bounds_calls_by_the_tools() -> None:
    tools = [{"type": "function", "function": FN}]
    body = ToolRequest([{"role": "user", "content": "x"}], tools, "required")
    assert plan(body, None).parser.max_calls == 1  # type: ignore[union-attr]
    body = ToolRequest([{"role": "user", "content": "x"}], tools * 2, "required")
    assert plan(body, None).parser.max_calls == 2  # type: ignore[union-attr]


def test_values_are_bounded(admits: Any) -> None:
    number = Constraint("json_schema", '{"type": "number"}')
    assert admits(number, "3.141592") and admits(number, "-12")
    assert not admits(number, "3.1415926") and not admits(number, "1e5")
    assert not admits(number, "1" * 17)
    string = Constraint("json_schema", '{"type": "string"}')
    assert admits(string, json.dumps("a" * MAX_STRING_LENGTH))
    assert not admits(string, json.dumps("a" * (MAX_STRING_LENGTH + 1)))
    longer = Constraint("json_schema", '{"type": "string", "maxLength": 1000}')
    assert admits(longer, json.dumps("a" * 999))  # the schema's own bound wins
    assert bound_schema({"enum": [1.23456789]}) == {"enum": [1.23456789]}
    items = Constraint("json_schema", '{"type": "array", "items": {"type": "integer"}}')
    assert admits(items, json.dumps([1] * MAX_ITEMS))
    assert not admits(items, json.dumps([1] * (MAX_ITEMS + 1)))


def test_no_parameters_and_strict_close_the_object(admits: Any) -> None:
    bare = {"type": "function", "function": {"name": "g"}}
    loose = {"type": "object", "properties": {"x": {"type": "integer"}}}
    strict = {"type": "function", "function": {"name": "f", "parameters": loose, "strict": True}}
    listed = {"type": "function", "function": FN}
    free = {"type": "function", "function": {"name": "h", "parameters": {"type": "object"}}}
    for tool, good, bad in (
        (bare, "{}", '{"argument1": "value1"}'),
        (strict, '{"x": 1}', '{"x": 1, "y": 2}'),
        (listed, '{"x": 1}', '{"x": 1, "type": "object"}'),  # listed keys only, as XGrammar
        (free, '{"y": 2}', "[]"),  # an object that lists no properties stays open
    ):
        body = ToolRequest([{"role": "user", "content": "x"}], [tool], "required")
        grammar = plan(body, None).constraint
        assert grammar is not None
        name = tool["function"]["name"]
        call = '<tool_call>[{"name": "%s", "arguments": %s}]</tool_call>'
        assert admits(grammar, call % (name, good))
        assert not admits(grammar, call % (name, bad))
