"""Function calling: tools into the prompt, tool_choice as a grammar, calls parsed from the text.

Formats, chosen by what the model's chat template writes:

* ``hermes``: Hermes / Qwen templates (they mention ``<tool_call>``): each call is
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
* ``llama3_json``: Llama-3.x templates (``<|python_tag|>`` / ``<|eot_id|>``): the answer is one
  JSON object ``{"name": ..., "parameters": {...}}``;
* ``smollm2`` (also any template that does not render ``tools``): the tools are described in a
  system message in SmolLM2's function-calling format and calls come back as
  ``<tool_call>[{"name": ..., "arguments": {...}}, ...]</tool_call>``.

The hermes and smollm2 parsers are one: the body of ``<tool_call>`` may be an object or a list.
``tool_choice: "required"`` or a named function is enforced with a grammar (Lark with an embedded
JSON schema, compact and bounded as ``response_format``'s: ``grammars.json_options``) that only
admits calls; ``"auto"`` lets the model choose and parses what it wrote.

How many calls: one when ``parallel_tool_calls`` is false or a function is named (the grammar
admits one, and under ``"auto"`` the parser returns the first only); under ``"required"``
otherwise at most one per tool given (:data:`MAX_CALLS` at most), and the model may stop after
the first: a small model that repeats a call stops there instead of running into max_tokens.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from radixserve.common.errors import InvalidArgument
from radixserve.common.grammars import bound_schema, check_constraint, json_options, map_schema
from radixserve.common.types import Constraint
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.tokenizer.tool_stream import MARKER, PYTHON_TAG, ToolStream

logger = logging.getLogger(__name__)

MAX_CALLS = 8  # calls a "required" grammar admits at most (fewer with fewer tools)

_SMOLLM2_SYSTEM = (
    "You are an expert in composing functions. You are given a question and a set of possible "
    "functions. Based on the question, you will need to make one or more function/tool calls to "
    "achieve the purpose. If none of the functions can be used, point it out and refuse to "
    "answer.\n\nYou have access to the following tools:\n<tools>{tools}</tools>\n\n"
    "The output MUST strictly adhere to the following format, and NO other text MUST be "
    "included.\n<tool_call>[\n"
    '{{"name": "func_name1", "arguments": {{"argument1": "value1", "argument2": "value2"}}}},\n'
    "... (more tool calls as required)\n]</tool_call>"
)


@dataclass
class ChatPlan:
    """What a chat request's tools change: template tools, grammar, and the output parser."""

    tools: list[dict[str, Any]] | None = None
    constraint: Constraint | None = None
    parser: ToolParser | None = None


class ToolParser:
    """Splits a model's answer into content and OpenAI ``tool_calls`` entries."""

    def __init__(
        self, fmt: str, names: set[str], max_calls: int | None = None, forced: bool = False
    ) -> None:
        self.fmt = fmt
        self.names = names
        self.max_calls = max_calls  # None: as many as the model writes
        self.forced = forced  # tool_choice required or named: the answer is calls only

    def stream(self) -> ToolStream:
        """A stream of one choice's answer (content and call deltas as the text grows)."""
        return ToolStream(self.fmt, self.names, self.streamable, self.max_calls, self.forced)

    def parse(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """A whole answer's content and calls: the same scan a stream does, fed at once, so
        both agree (a call cut by max_tokens included, see ``tool_stream``)."""
        stream = self.stream()
        content = stream.feed(text, final=True).content
        calls = stream.calls()
        return (content.strip() if calls else content), calls

    def streamable(self, text: str) -> int:
        """How much of ``text`` (a choice's output so far) is content for sure: the part before
        anything that is, or may grow into, a tool call. Held back text is parsed at the end."""
        if self.fmt == "llama3_json":
            head = text.lstrip()
            opens = ("{", "[", PYTHON_TAG)
            maybe = not head or any(head.startswith(o) or o.startswith(head) for o in opens)
            return 0 if maybe else len(text)
        at = text.find(MARKER)
        if at >= 0:
            return at
        for k in range(min(len(MARKER) - 1, len(text)), 0, -1):  # a marker cut by the chunk
            if MARKER.startswith(text[-k:]):
                return len(text) - k
        return len(text)


def detect_format(template: str | None) -> str:
    """The tool-call format a chat template speaks (see the module docstring)."""
    if not template or "tools" not in template:
        return "smollm2"
    if "<tool_call>" in template:
        return "hermes"
    if "<|python_tag|>" in template or "<|eot_id|>" in template:
        return "llama3_json"
    return "smollm2"


@dataclass
class ToolRequest:
    """What :func:`plan` reads of a chat request, for front doors without a pydantic body."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


def plan(body: Any, tokenizer: Any, where: str = "") -> ChatPlan:
    """The :class:`ChatPlan` of a chat request (``body``: a ChatCompletionRequest or a
    :class:`ToolRequest`); its ``messages`` are rewritten where the format needs it. ``where``
    prefixes the field an error names (the gRPC API's ``chat.``)."""
    tools = body.tools
    _check_tool_messages(body.messages, where)
    if detect_format(getattr(tokenizer, "chat_template", None)) == "smollm2":
        body.messages = inline_tool_calls(body.messages)
    if not tools:
        if body.tool_choice not in (None, "none"):
            raise InvalidArgument("needs tools", f"{where}tool_choice")
        return ChatPlan()
    functions = [_function(f"{where}tools[{i}]", t) for i, t in enumerate(tools)]
    choice = body.tool_choice or "auto"
    if choice == "none":
        return ChatPlan()  # the tools stay out of the prompt: the model must answer in text
    fmt = detect_format(getattr(tokenizer, "chat_template", None))
    names = {f["name"] for f in functions}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        message = (
            "allowed_tools is not supported: send only the allowed tools in tools, with "
            "tool_choice auto or required"
        )
        raise InvalidArgument(message, f"{where}tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if choice.get("type") != "function" or name not in names:
            raise InvalidArgument(f"names no function of tools: {name!r}", f"{where}tool_choice")
        allowed = [f for f in functions if f["name"] == name]
    elif choice in ("auto", "required"):
        allowed = functions
    else:
        message = "must be none, auto, required or a function"
        raise InvalidArgument(message, f"{where}tool_choice")
    single = body.parallel_tool_calls is False or isinstance(choice, dict)
    max_calls = 1 if single else None
    constraint = None
    if choice != "auto":
        max_calls = 1 if single else min(len(allowed), MAX_CALLS)
        constraint = call_grammar(fmt, allowed, max_calls)
    parser = ToolParser(fmt, names, max_calls, forced=constraint is not None)
    if fmt == "smollm2":
        _add_system(body, functions)
        return ChatPlan(None, constraint, parser)
    return ChatPlan([{"type": "function", "function": f} for f in functions], constraint, parser)


def _check_tool_messages(messages: Any, where: str) -> None:
    """A tool message answers a call: without its ``tool_call_id`` it is a 400, as OpenAI's."""
    if not isinstance(messages, list):
        return
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "tool" and not m.get("tool_call_id"):
            raise InvalidArgument("is required for role tool", f"{where}messages[{i}].tool_call_id")


def constrain(req: GenerateInput, chat: ChatPlan, where: str = "") -> GenerateInput:
    """``req`` under the plan's grammar, when it has one (tool_choice required or named): it
    takes the place of a grammar the request set itself. A tool schema the grammar cannot take
    is an InvalidArgument naming ``tools``."""
    if chat.constraint is None:
        return req
    check_constraint(chat.constraint, f"{where}tools")
    return replace(req, sampling=replace(req.sampling, constraint=chat.constraint))


def _function(where: str, tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise InvalidArgument("must be {'type': 'function', 'function': {...}}", where)
    fn = tool.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise InvalidArgument("needs a name", f"{where}.function.name")
    # NOTE: no parameters means none: a closed empty object, or a small model fills it with the
    # placeholder keys of the system prompt's example (argument1: value1).
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        raise InvalidArgument("must be a JSON schema object", f"{where}.function.parameters")
    return {**fn, "parameters": params}


def closed(schema: Any, strict: bool = False) -> Any:
    """``schema`` with its objects closed (``additionalProperties: false``) where they do not say
    otherwise: those that list ``properties`` (as XGrammar's default strict mode: the arguments
    are the keys the tool names, not what the model makes up), and with ``strict`` (OpenAI's
    ``strict: true``) every object."""
    return map_schema(schema, lambda s: _close(s, strict))


def _close(schema: dict[str, Any], strict: bool) -> dict[str, Any]:
    listed = isinstance(schema.get("properties"), dict)
    if listed or (strict and schema.get("type") == "object"):
        schema.setdefault("additionalProperties", False)
    return schema


def _arguments_schema(function: dict[str, Any]) -> dict[str, Any]:
    """What the grammar admits as a call's arguments: the tool's parameters closed and bounded
    (the prompt shows them as the client gave them)."""
    params = closed(function["parameters"], strict=function.get("strict") is True)
    return bound_schema(params)  # type: ignore[no-any-return]


def _call_schema(fmt: str, functions: list[dict[str, Any]]) -> dict[str, Any]:
    key = "parameters" if fmt == "llama3_json" else "arguments"
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": f["name"]}, key: _arguments_schema(f)},
            "required": ["name", key],
            "additionalProperties": False,
        }
        for f in functions
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def call_grammar(fmt: str, functions: list[dict[str, Any]], max_calls: int = 1) -> Constraint:
    """A grammar whose every sentence is 1 to ``max_calls`` calls (llama3_json: one), their JSON
    compact (``grammars.json_options``, as ``response_format``'s)."""
    call = _call_schema(fmt, functions)
    if fmt == "llama3_json":
        return Constraint("json_schema", json.dumps(call))
    options = {"x-guidance": json_options()}
    if fmt == "hermes":
        one = f'"<tool_call>\\n" %json {json.dumps({**call, **options})} "\\n</tool_call>"'
        rule = "call" if max_calls <= 1 else f'call ("\\n" call){{0,{max_calls - 1}}}'
        return Constraint("ebnf", f"start: {rule}\ncall: {one}\n")
    array = {"type": "array", "items": call, "minItems": 1, "maxItems": max(max_calls, 1)}
    body = json.dumps({**array, **options})
    return Constraint("ebnf", f'start: "<tool_call>" %json {body} "</tool_call>"\n')


def inline_tool_calls(messages: Any) -> Any:
    """Assistant ``tool_calls`` written into the content, for templates that ignore them, so the
    model sees its earlier calls in its own format (then the ``tool`` messages' answers)."""
    if not isinstance(messages, list):
        return messages
    out = []
    for m in messages:
        calls = m.get("tool_calls") if isinstance(m, dict) else None
        if m.get("role") == "assistant" and isinstance(calls, list) and calls:
            body = [_plain_call(c) for c in calls]
            text = f"<tool_call>{json.dumps(body, ensure_ascii=False)}</tool_call>"
            head = m.get("content") if isinstance(m.get("content"), str) else ""
            m = {k: v for k, v in m.items() if k != "tool_calls"}
            m["content"] = f"{head}{text}"
        out.append(m)
    return out


def _plain_call(call: Any) -> dict[str, Any]:
    fn = call.get("function", {}) if isinstance(call, dict) else {}
    args = fn.get("arguments", "{}")
    try:
        args = json.loads(args) if isinstance(args, str) else args
    except json.JSONDecodeError:
        pass  # kept as the client sent it
    return {"name": fn.get("name"), "arguments": args}


def _add_system(body: Any, functions: list[dict[str, Any]]) -> None:
    """Puts the tool descriptions in the system message (templates that do not render tools)."""
    text = _SMOLLM2_SYSTEM.format(tools=json.dumps(functions, ensure_ascii=False))
    messages = list(body.messages)
    first = messages[0] if messages else {}
    if isinstance(first, dict) and first.get("role") in ("system", "developer"):
        head = first.get("content")
        head = head if isinstance(head, str) else ""
        messages[0] = {**first, "role": "system", "content": f"{head}\n\n{text}".strip()}
    else:
        messages.insert(0, {"role": "system", "content": text})
    body.messages = messages
