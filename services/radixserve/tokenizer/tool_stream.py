"""Tool calls read out of a model's text as it grows, for streamed and whole answers alike.

A call's body is a JSON object (``{"name": ..., "arguments": {...}}``) or an array of them.
:class:`BodyScanner` scans it one character at a time, resumably, and records for each call its
name and the *span* of its arguments value in the text. The arguments a client gets are that span,
exactly as the model wrote it, so the text seen so far always holds a prefix of the final
arguments: a stream sends each new piece once, and the pieces join to what a non-streamed answer
returns (:class:`ToolStream` does both; ``ToolParser.parse`` is a stream fed the whole text).

NOTE: an answer cut inside a call (max_tokens) is, streamed or not, the same: its finish_reason
stays ``length``, a call whose name was written is returned with the arguments written so far
(incomplete JSON, as OpenAI returns a call cut by max_tokens), and the model's markup
(``<tool_call>`` and a body cut before its name) never reaches the content.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

MARKER = "<tool_call>"
PYTHON_TAG = "<|python_tag|>"
ARG_KEYS = ("arguments", "parameters")
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_WS = " \t\n\r"
_LITERAL = frozenset("0123456789+-.eEtrufalsn")


@dataclass
class ScannedCall:
    """One call object as far as it was scanned; offsets index the whole text."""

    name: str | None = None
    args_start: int = -1  # where the arguments value starts; -1 until it does
    args_end: int = -1  # where it ends; -1 until it does
    done: bool = False  # the call's object closed

    @property
    def decided(self) -> bool:
        """Its name is known, or it closed without one: whether to announce it is settled."""
        return self.name is not None or self.done

    def arguments(self, text: str, scanned_to: int) -> str:
        """The arguments seen so far (a prefix of the final ones); ``{}`` when it had none."""
        if self.args_start < 0:
            return "{}" if self.done else ""
        return text[self.args_start : self.args_end if self.args_end >= 0 else scanned_to]


@dataclass
class _Frame:
    kind: str  # "o" (object) or "a" (array)
    call: ScannedCall | None = None  # a call's own object
    body: bool = False  # the body's top-level array (its objects are calls)
    expect: str = "value"  # object: key, colon, value, comma; array: value, comma
    key: str | None = None
    empty: bool = True
    capturing: bool = False  # the value being scanned is the call's arguments


class BodyScanner:
    """Resumable scan of one call body, from ``start`` in a text that grows between feeds."""

    def __init__(self, start: int) -> None:
        self.pos = start
        self.stack: list[_Frame] = []
        self.calls: list[ScannedCall] = []
        self.done = False  # the body's value closed
        self.broken = False  # not JSON (scanning stopped)
        self._str_at = -1  # open quote of the string being scanned
        self._str_key = False
        self._escape = False
        self._lit_at = -1  # start of the number or literal being scanned

    @property
    def finished(self) -> bool:
        return self.done or self.broken

    def feed(self, text: str) -> None:
        i, n = self.pos, len(text)
        while i < n and not self.finished:
            c = text[i]
            if self._str_at >= 0:
                if self._escape:
                    self._escape = False
                elif c == "\\":
                    self._escape = True
                elif c == '"':
                    at, self._str_at = self._str_at, -1
                    self._string_done(text[at : i + 1], i + 1)
            elif self._lit_at >= 0 and c in _LITERAL:
                pass
            elif self._lit_at >= 0:
                self._lit_at = -1
                self._value_done(i)
                continue  # NOTE: ``c`` ends the literal and is scanned again as punctuation
            elif c not in _WS:
                self._punct(c, i)
            i += 1
        self.pos = i

    def _punct(self, c: str, i: int) -> None:
        top = self.stack[-1] if self.stack else None
        expect = top.expect if top is not None else "value"
        if top is not None and c == ("}" if top.kind == "o" else "]"):
            if expect == "comma" or (top.empty and expect in ("key", "value")):
                self._close(i)
                return
        if expect == "value":
            self._value_start(c, i, top)
        elif expect == "key" and c == '"':
            top.empty = False  # type: ignore[union-attr]
            self._str_at, self._str_key = i, True
        elif expect == "colon" and c == ":":
            top.expect = "value"  # type: ignore[union-attr]
        elif expect == "comma" and c == ",":
            top.expect = "key" if top.kind == "o" else "value"  # type: ignore[union-attr]
        else:
            self.broken = True

    def _value_start(self, c: str, i: int, top: _Frame | None) -> None:
        if top is not None:
            top.empty = False
            call = top.call
            if call is not None and top.key in ARG_KEYS and call.args_start < 0:
                call.args_start, top.capturing = i, True
        if c == "{":
            is_call = top is None or top.body
            call = ScannedCall() if is_call else None
            if call is not None:
                self.calls.append(call)
            self.stack.append(_Frame("o", call=call, expect="key"))
        elif c == "[":
            self.stack.append(_Frame("a", body=top is None))
        elif top is None:
            self.broken = True  # a body is an object or an array
        elif c == '"':
            self._str_at, self._str_key = i, False
        elif c in _LITERAL:
            self._lit_at = i
        else:
            self.broken = True

    def _string_done(self, raw: str, end: int) -> None:
        top = self.stack[-1]
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            self.broken = True
            return
        if self._str_key:
            top.key, top.expect = value, "colon"
            return
        if top.call is not None and top.key == "name" and top.call.name is None:
            top.call.name = value
        self._value_done(end)

    def _close(self, i: int) -> None:
        frame = self.stack.pop()
        if frame.call is not None:
            frame.call.done = True
        self._value_done(i + 1)

    def _value_done(self, end: int) -> None:
        if not self.stack:
            self.done = True
            return
        top = self.stack[-1]
        if top.capturing:
            top.call.args_end, top.capturing = end, False  # type: ignore[union-attr]
        top.expect = "comma"


@dataclass
class StreamDelta:
    """What one piece of text adds: content to send and OpenAI ``tool_calls`` delta entries."""

    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Announced:
    call: ScannedCall
    scanner: BodyScanner
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")
    sent: int = -1  # characters of its arguments already sent; -1: not announced yet


class ToolStream:
    """One choice's answer, fed as it grows: content up to a possible call, then call deltas.

    A call is announced once its name is known (and is one of ``names``), as OpenAI's first
    delta of a call: index, id, type, name and the arguments so far; each later piece of its
    arguments follows as ``{"index", "function": {"arguments"}}``. Text held back after the first
    call marker is sent as content at the end (all of it when no call was made).
    """

    def __init__(
        self,
        fmt: str,
        names: set[str],
        streamable: Any,
        max_calls: int | None = None,
        forced: bool = False,
    ) -> None:
        self.fmt = fmt
        self.names = names
        self.max_calls = max_calls  # calls announced at most (parallel_tool_calls false: 1)
        self.forced = forced  # a grammar admits calls only: no text of it is content
        self._streamable = streamable  # text -> how much of it is content for sure
        self.text = ""
        self.sent = 0  # characters sent as content
        self.scanners: list[BodyScanner] = []
        self.marks: list[int] = []  # where each scanner's body begins, its marker included
        self.announced: list[_Announced] = []
        self._seen = 0  # calls (over all scanners) already decided
        self._search = 0  # where to look for the next call marker
        self._started = False

    @property
    def called(self) -> bool:
        return bool(self.announced)

    def feed(self, piece: str, final: bool = False) -> StreamDelta:
        self.text += piece
        out = StreamDelta()
        if not self._started:
            safe = max(self.sent, self._streamable(self.text))
            out.content, self.sent = self.text[self.sent : safe], safe
        self._scan()
        out.tool_calls = self._call_deltas()
        if final:
            out.content += self._rest()
        if self.forced:
            out.content = ""
        return out

    def _scan(self) -> None:
        while True:
            current = self.scanners[-1] if self.scanners else None
            if current is not None and not current.finished:
                current.feed(self.text)
                if not current.finished:
                    return
                self._search = current.pos
            mark, start = self._next_body()
            if start < 0:
                return
            self._started = True
            self.scanners.append(BodyScanner(start))
            self.marks.append(mark)

    def _next_body(self) -> tuple[int, int]:
        """Where the next call (its marker) and its body start in the text; -1 when none (yet)."""
        if self.fmt != "llama3_json":
            at = self.text.find(MARKER, self._search)
            if at < 0:  # NOTE: a marker may still end in the last len(MARKER) - 1 characters
                self._search = max(self._search, len(self.text) - len(MARKER) + 1)
                return -1, -1
            return at, at + len(MARKER)
        if self.scanners:
            return -1, -1  # one body: the whole answer
        head = self.text.lstrip()
        skip = len(self.text) - len(head)
        if head.startswith(PYTHON_TAG):
            skip += len(PYTHON_TAG)
        rest = self.text[skip:].lstrip()
        if rest[:1] in ("{", "[") and self._streamable(self.text) == 0:
            return 0, len(self.text) - len(rest)
        return -1, -1

    def _call_deltas(self) -> list[dict[str, Any]]:
        calls = [(s, c) for s in self.scanners for c in s.calls]
        for scanner, call in calls[self._seen :]:
            if not (call.decided or scanner.finished):
                break  # NOTE: calls are announced in order, so a later one waits for this one
            self._seen += 1
            full = self.max_calls is not None and len(self.announced) >= self.max_calls
            if call.name in self.names and not full:
                self.announced.append(_Announced(call, scanner))
        deltas = []
        for index, a in enumerate(self.announced):
            args = a.call.arguments(self.text, a.scanner.pos)
            if a.sent < 0:
                function = {"name": a.call.name, "arguments": args}
                deltas.append(
                    {"index": index, "id": a.id, "type": "function", "function": function}
                )
            elif len(args) > a.sent:
                deltas.append({"index": index, "function": {"arguments": args[a.sent :]}})
            a.sent = len(args)
        return deltas

    def _rest(self) -> str:
        """Content held back after the first call marker, once the answer ended."""
        end = len(self.text)
        cut = self.scanners and not self.scanners[-1].finished
        if cut:  # a body cut off (max_tokens): its markup is no content, called or not
            end = self.marks[-1]
        rest = self.text[self.sent : max(end, self.sent)]
        self.sent = len(self.text)
        if not self.announced:
            return rest
        if self.fmt == "llama3_json":
            return ""
        return _TOOL_CALL.sub("", rest).strip()

    def calls(self) -> list[dict[str, Any]]:
        """The calls (OpenAI ``tool_calls`` entries) of the text fed so far, as a stream sent
        them: a call cut off with the text (max_tokens) keeps the arguments written so far; a
        finished call whose arguments are no JSON is left out."""
        out = []
        for a in self.announced:
            args = a.call.arguments(self.text, a.scanner.pos)
            cut = not a.call.done and not a.scanner.finished
            if cut or (a.call.done and _is_json(args)):
                function = {"name": a.call.name, "arguments": args}
                out.append({"id": a.id, "type": "function", "function": function})
        return out


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True
