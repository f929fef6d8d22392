"""Grammar constraints as llguidance grammars: built and validated once per key, no torch here.

The front door calls :func:`check_constraint` to refuse a bad grammar with a 400 before the
request is queued; the worker builds its matchers from :func:`grammar_text` (same cache).

JSON schemas (``response_format``, ``json_schema`` and the tool-call grammars alike) are compiled
compact (no free whitespace) and bounded (:func:`bound_schema`): what a schema leaves unbounded
gets a limit, as production grammar engines do, so a small model cannot run on in one value
until max_tokens. A schema's own bounds win.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from radixserve.common.errors import InvalidArgument
from radixserve.common.types import Constraint

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

logger = logging.getLogger(__name__)

# Compact JSON without free whitespace: a small model cannot wander into endless blank lines.
_JSON_OPTIONS: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}
# The bounds :func:`bound_schema` adds where a schema sets none.
MAX_STRING_LENGTH = 128  # characters of a string without maxLength (pattern, format or enum)
MAX_ITEMS = 32  # items of an array without maxItems
MAX_NUMBER_MAGNITUDE = 10**15  # integers and numbers without minimum / maximum: |x| <= 1e15
NUMBER_STEP = 1e-6  # numbers without multipleOf: at most 6 digits after the point, no exponent
_LITERALS = ("enum", "const", "default", "examples")  # values, not schemas: left as they are
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def _number(schema: dict[str, Any], *keys: str) -> float | None:
    values = [v for k in keys if isinstance(v := schema.get(k), (int, float))]
    return values[0] if values else None


def json_options() -> JsonCompileOptions:
    """The compile options of every JSON schema (llguidance's ``x-guidance`` key in a Lark
    ``%json`` schema, or ``defaults`` for a plain one)."""
    return dict(_JSON_OPTIONS)  # type: ignore[return-value]


def map_schema(schema: Any, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``schema`` with ``fn`` applied to each of its (sub)schemas, innermost first; the maps of
    named schemas (``properties``, ``$defs``) are walked by name, values (``enum``) left alone."""
    if isinstance(schema, list):
        return [map_schema(s, fn) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _LITERALS:
            out[key] = value
        elif key in _NAMED and isinstance(value, dict):
            out[key] = {name: map_schema(s, fn) for name, s in value.items()}
        else:
            out[key] = map_schema(value, fn)
    return fn(out)


def bound_schema(schema: Any) -> Any:
    """``schema`` with the bounds of the module docstring added where it leaves them open: a
    string's length, an array's items, a number's magnitude and decimals, an integer's
    magnitude."""
    return map_schema(schema, _bound)


def _bound(out: dict[str, Any]) -> dict[str, Any]:
    kind = out.get("type")
    kinds = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    if len(kinds) != 1 or any(k in out for k in _LITERALS):
        return out
    if kinds == {"array"} and "maxItems" not in out:
        out["maxItems"] = max(MAX_ITEMS, out.get("minItems", 0))
    if kinds == {"string"} and not {"maxLength", "pattern", "format"} & out.keys():
        out["maxLength"] = max(MAX_STRING_LENGTH, out.get("minLength", 0))
    if kinds & {"integer", "number"}:
        low = _number(out, "minimum", "exclusiveMinimum")
        high = _number(out, "maximum", "exclusiveMaximum")
        if low is None:
            out["minimum"] = min(-MAX_NUMBER_MAGNITUDE, high if high is not None else 0)
        if high is None:
            out["maximum"] = max(MAX_NUMBER_MAGNITUDE, low if low is not None else 0)
    if kinds == {"number"} and "multipleOf" not in out:
        out["multipleOf"] = NUMBER_STEP
    return out


@functools.lru_cache(maxsize=256)
def grammar_text(kind: str, value: str) -> str:
    """The llguidance grammar of a constraint (cached by key); ValueError when it is invalid."""
    import llguidance

    try:
        if kind == "json_schema":
            schema = json.dumps(bound_schema(json.loads(value)))
            text = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=_JSON_OPTIONS)
        elif kind == "choice":
            text = llguidance.grammar_from("choice", json.loads(value))
        elif kind == "regex":
            text = llguidance.grammar_from("regex", value)
        elif kind == "ebnf":
            text = llguidance.grammar_from("ebnf", value)
        else:
            raise ValueError(f"unknown constraint kind {kind!r}")
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from exc
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(text)
    if is_error:
        raise ValueError("; ".join(messages))
    return text


def check_constraint(constraint: Constraint, field: str = "constraint") -> None:
    """Raises InvalidArgument naming ``field`` when the grammar cannot be compiled."""
    try:
        grammar_text(constraint.kind, constraint.value)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {constraint.kind}: {exc}", field) from exc
