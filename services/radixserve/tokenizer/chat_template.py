"""Render chat messages into a prompt with the model's jinja2 chat template.

Templates come from model files, so they run in jinja2's immutable sandbox. The environment
matches what Hugging Face's ``apply_chat_template`` gives a template: ``trim_blocks``,
``lstrip_blocks``, the ``loopcontrols`` extension, ``raise_exception``, ``strftime_now`` and a
``tojson`` that keeps non-ASCII characters. Every failure is a ``ValueError`` (HTTP 400 /
INVALID_ARGUMENT upstream) whose message names the offending field.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

logger = logging.getLogger(__name__)

ROLES = ("system", "developer", "user", "assistant", "tool")

# ChatML, for models that ship no template (and the byte-level dummy tokenizer).
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ChatTemplateError(ValueError):
    """The template failed to compile or render (``raise_exception`` included)."""


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """Check chat messages and return normalized copies.

    ``content`` may be a string, ``None`` (becomes ``""``) or a list of ``{"type": "text",
    "text": ...}`` parts (joined with newlines). Raises ``ValueError("messages[i].field: ...")``.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: must be a non-empty list")
    return [_validate_message(i, m) for i, m in enumerate(messages)]


def _validate_message(i: int, message: Any) -> dict[str, Any]:
    where = f"messages[{i}]"
    if not isinstance(message, Mapping):
        raise ValueError(f"{where}: must be an object with 'role' and 'content'")
    role = message.get("role")
    if role not in ROLES:
        raise ValueError(f"{where}.role: must be one of {', '.join(ROLES)}; got {role!r}")
    out = dict(message)
    if role == "developer":  # OpenAI's newer name for system; templates know only system
        out["role"] = "system"
    out["content"] = _content_text(where, message.get("content"))
    if role == "tool" and not isinstance(message.get("tool_call_id", ""), str):
        raise ValueError(f"{where}.tool_call_id: must be a string")
    if "tool_calls" in message and not isinstance(message["tool_calls"], (list, type(None))):
        raise ValueError(f"{where}.tool_calls: must be a list")
    if "name" in message and not isinstance(message["name"], (str, type(None))):
        raise ValueError(f"{where}.name: must be a string")
    return out


def _content_text(where: str, content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise ValueError(f"{where}.content: must be a string or a list of text parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, Mapping):
            raise ValueError(f"{where}.content[{j}]: must be an object")
        if part.get("type") != "text":
            raise ValueError(f"{where}.content[{j}].type: only 'text' is supported")
        if not isinstance(part.get("text"), str):
            raise ValueError(f"{where}.content[{j}].text: must be a string")
        texts.append(part["text"])
    return "\n".join(texts)


def render_chat(
    messages: Any,
    template: str | None = None,
    *,
    add_generation_prompt: bool = True,
    bos_token: str | None = None,
    eos_token: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    **template_kwargs: Any,
) -> str:
    """The prompt text for ``messages`` (validated first) under ``template`` (ChatML if None)."""
    checked = validate_messages(messages)
    compiled = compile_template(template or DEFAULT_CHAT_TEMPLATE)
    context = dict(template_kwargs)
    context.update(
        messages=checked,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token or "",
        eos_token=eos_token or "",
        tools=tools,
    )
    try:
        return compiled.render(**context)
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template: {e}") from e
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise ChatTemplateError(f"chat template: {type(e).__name__}: {e}") from e


def render_chat_for(tokenizer: Any, messages: Any, **kwargs: Any) -> str:
    """:func:`render_chat` with a tokenizer's template and bos/eos strings."""
    kwargs.setdefault("bos_token", tokenizer.bos_token)
    kwargs.setdefault("eos_token", tokenizer.eos_token)
    return render_chat(messages, tokenizer.chat_template, **kwargs)


@functools.lru_cache(maxsize=32)
def compile_template(template: str) -> jinja2.Template:
    """The compiled template (cached); ``ChatTemplateError`` on a syntax error."""
    try:
        return _environment().from_string(template)
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template: {e}") from e


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **kw: Any) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, **kw)
