"""tokenizer.proto <-> domain: chat messages, tools and tool calls as the OpenAI-shaped dicts.

The tokenizer servicer turns a ``ChatInput`` into the dicts the HTTP API parses from JSON (so both
front doors run the same ``tool_calls.plan``); the SDK builds a ``ChatInput`` from the dicts
OpenAI's client takes. Bad input raises InvalidArgument naming the proto field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from radixserve.common.errors import InvalidArgument
from radixserve.v1 import tokenizer_pb2

# Generate's initial metadata carries the request's owner ticket; an Abort that carries it in its
# own metadata reaches a request started under a client-chosen rid without an API key (issue 23).
OWNER_HEADER = "x-radixserve-owner"


def metadata_value(metadata: Iterable[tuple[str, str | bytes]] | None, name: str) -> str:
    """The value of ``name`` in gRPC call metadata ("" when absent)."""
    for key, value in metadata or ():
        if key == name:
            return value if isinstance(value, str) else value.decode("latin-1")
    return ""


def owner_ticket(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The owner ticket in a call's initial metadata ("" when there is none)."""
    return metadata_value(metadata, OWNER_HEADER)


_MODES = {
    tokenizer_pb2.TOOL_CHOICE_MODE_NONE: "none",
    tokenizer_pb2.TOOL_CHOICE_MODE_AUTO: "auto",
    tokenizer_pb2.TOOL_CHOICE_MODE_REQUIRED: "required",
}
_MODE_VALUES = {name: value for value, name in _MODES.items()}

# ---- server side: pb -> dicts ----------------------------------------------------------------


def messages_from_pb(chat: tokenizer_pb2.ChatInput) -> list[dict[str, Any]]:
    """The messages as OpenAI dicts (``tool_call_id`` and ``tool_calls`` only where set)."""
    out = []
    for m in chat.messages:
        msg: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            msg["tool_calls"] = [_call_dict(c) for c in m.tool_calls]
        out.append(msg)
    return out


def _call_dict(c: tokenizer_pb2.ToolCall) -> dict[str, Any]:
    return {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}


def tools_from_pb(
    chat: tokenizer_pb2.ChatInput, where: str = "chat."
) -> list[dict[str, Any]] | None:
    """OpenAI ``tools`` entries; None when there are none."""
    if not chat.tools:
        return None
    return [_tool_from_pb(t, f"{where}tools[{i}]") for i, t in enumerate(chat.tools)]


def _tool_from_pb(tool: tokenizer_pb2.Tool, where: str) -> dict[str, Any]:
    if not tool.name:
        raise InvalidArgument("must not be empty", f"{where}.name")
    function: dict[str, Any] = {"name": tool.name}
    if tool.parameters:  # NOTE: none stays unset: tool_calls closes that object (no arguments)
        try:
            params = json.loads(tool.parameters)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"is not JSON: {exc}", f"{where}.parameters") from exc
        if not isinstance(params, dict):
            raise InvalidArgument("must be a JSON schema object", f"{where}.parameters")
        function["parameters"] = params
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def tool_choice_from_pb(chat: tokenizer_pb2.ChatInput, where: str = "chat.") -> Any:
    """OpenAI's ``tool_choice``: None (unset), a mode string or ``{"type": "function", ...}``."""
    kind = chat.tool_choice.WhichOneof("choice") if chat.HasField("tool_choice") else None
    if kind == "function_name":
        return {"type": "function", "function": {"name": chat.tool_choice.function_name}}
    if kind == "mode" and chat.tool_choice.mode != tokenizer_pb2.TOOL_CHOICE_MODE_UNSPECIFIED:
        mode = _MODES.get(chat.tool_choice.mode)
        if mode is None:
            message = f"unknown mode {chat.tool_choice.mode}"
            raise InvalidArgument(message, f"{where}tool_choice.mode")
        return mode
    return None


def tool_call_to_pb(delta: Mapping[str, Any]) -> tokenizer_pb2.ToolCall:
    """A ``tool_calls`` delta entry (``tool_stream``) as a ToolCall piece."""
    fn = delta.get("function", {})
    return tokenizer_pb2.ToolCall(
        index=delta["index"],
        id=delta.get("id", ""),
        name=fn.get("name", ""),
        arguments=fn.get("arguments", ""),
    )


# ---- client side: dicts -> pb ----------------------------------------------------------------


def chat_input_pb(
    messages: Iterable[Mapping[str, Any]],
    tools: Iterable[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    parallel_tool_calls: bool | None = None,
) -> tokenizer_pb2.ChatInput:
    """A ChatInput from OpenAI-style messages, tools (``{"type": "function", "function": {...}}``
    or the bare function) and tool_choice (``"none"``, ``"auto"``, ``"required"``, a function's
    name or ``{"type": "function", "function": {"name": ...}}``)."""
    chat = tokenizer_pb2.ChatInput(messages=[_message_pb(m) for m in messages])
    chat.tools.extend(_tool_pb(t) for t in tools or ())
    if isinstance(tool_choice, Mapping):
        chat.tool_choice.function_name = tool_choice.get("function", {}).get("name", "")
    elif tool_choice in _MODE_VALUES:
        chat.tool_choice.mode = _MODE_VALUES[tool_choice]
    elif tool_choice is not None:
        chat.tool_choice.function_name = tool_choice
    if parallel_tool_calls is not None:
        chat.parallel_tool_calls = parallel_tool_calls
    return chat


def _message_pb(m: Mapping[str, Any]) -> tokenizer_pb2.ChatMessage:
    pb = tokenizer_pb2.ChatMessage(
        role=m["role"], content=m.get("content") or "", tool_call_id=m.get("tool_call_id") or ""
    )
    for call in m.get("tool_calls") or ():
        fn = call.get("function", call)  # OpenAI's entry, or the SDK's flat ToolCall dict
        args = fn.get("arguments", "{}")
        args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        pb.tool_calls.add(id=call.get("id", ""), name=fn.get("name", ""), arguments=args)
    return pb


def _tool_pb(tool: Mapping[str, Any]) -> tokenizer_pb2.Tool:
    fn = tool.get("function", tool)
    params = fn.get("parameters")
    if params is not None and not isinstance(params, str):
        params = json.dumps(params, ensure_ascii=False)
    return tokenizer_pb2.Tool(
        name=fn.get("name", ""), description=fn.get("description") or "", parameters=params or ""
    )
