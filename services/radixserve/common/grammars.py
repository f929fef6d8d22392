"""Grammar constraints as llguidance grammars: built and validated once per key, no torch here.

The front door calls :func:`check_constraint` to refuse a bad grammar with a 400 before the
request is queued; the worker builds its matchers from :func:`grammar_text` (same cache).
"""

from __future__ import annotations

import functools
import json
import logging
from typing import TYPE_CHECKING

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


@functools.lru_cache(maxsize=256)
def grammar_text(kind: str, value: str) -> str:
    """The llguidance grammar of a constraint (cached by key); ValueError when it is invalid."""
    import llguidance

    try:
        if kind == "json_schema":
            text = llguidance.LLMatcher.grammar_from_json_schema(value, defaults=_JSON_OPTIONS)
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
