"""Per-request state of the tokenizer service: detokenize, stop strings, coalesce, abort.

Transport-free. The scheduler link (``clients.SchedulerLink``) feeds :meth:`on_outputs` with one
batch of outputs per scheduler step and carries ``add``/``abort`` upstream.

NOTE (coalescing): each request keeps a list of pending chunks and one event. A reader that is
slower than the engine finds several chunks waiting and takes them as one, so a slow client never
holds the engine back and never gets one message per token it cannot keep up with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from services.tokenizer.detokenizer import IncrementalDetokenizer
from services.tokenizer.prompts import GenerateInput
from services.tokenizer.stop import StopStringMatcher
from services.tokenizer.tokenization import Tokenizer

logger = logging.getLogger(__name__)


@dataclass
class SchedOutput:
    """One request's news from one scheduler step."""

    rid: str
    token_ids: list[int]
    logprobs: list[float] | None = None
    finish_reason: str | None = None  # stop, length, abort, error
    matched_stop_token: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    error: str = ""


@dataclass
class Chunk:
    """What a client receives: new text and ids since its last chunk."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    error: str = ""

    def merge(self, later: Chunk) -> None:
        self.text += later.text
        self.token_ids += later.token_ids
        self.logprobs += later.logprobs
        self.finish_reason = later.finish_reason
        self.error = later.error or self.error
        self.prompt_tokens = later.prompt_tokens or self.prompt_tokens
        self.completion_tokens = later.completion_tokens or self.completion_tokens
        self.cached_tokens = later.cached_tokens or self.cached_tokens


class Upstream(Protocol):
    def add(self, reqs: list[GenerateInput]) -> None: ...
    def abort(self, rids: list[str]) -> None: ...


class _State:
    def __init__(self, req: GenerateInput, tokenizer: Tokenizer) -> None:
        self.req = req
        self.detok = IncrementalDetokenizer(
            tokenizer, req.skip_special_tokens, prompt_ids=req.input_ids
        )
        self.stop = StopStringMatcher(req.stop, req.include_stop_str_in_output)
        self.pending: list[Chunk] = []
        self.event = asyncio.Event()
        self.done = False

    def push(self, chunk: Chunk) -> None:
        self.pending.append(chunk)
        self.event.set()


class RequestManager:
    def __init__(self, tokenizer: Tokenizer, upstream: Upstream) -> None:
        self.tokenizer = tokenizer
        self.upstream = upstream
        self.states: dict[str, _State] = {}

    @property
    def num_running(self) -> int:
        return len(self.states)

    def generate(self, req: GenerateInput) -> AsyncIterator[Chunk]:
        """Sends ``req`` upstream now and returns its stream of coalesced chunks.

        The last chunk has a finish_reason. Closing the stream early (client gone) aborts the
        request upstream. Raises ValueError at once for a duplicate rid.
        """
        if req.rid in self.states:
            raise ValueError(f"rid: {req.rid!r} is already running")
        state = _State(req, self.tokenizer)
        self.states[req.rid] = state
        self.upstream.add([req])
        return self._stream(state)

    async def _stream(self, state: _State) -> AsyncIterator[Chunk]:
        rid = state.req.rid
        try:
            while True:
                await state.event.wait()
                state.event.clear()
                chunks, state.pending = state.pending, []
                merged = chunks[0]
                for later in chunks[1:]:
                    merged.merge(later)
                yield merged
                if merged.finish_reason is not None:
                    return
        finally:
            if self.states.pop(rid, None) is not None and not state.done:
                self.upstream.abort([rid])

    def abort(self, rid: str) -> bool:
        """Ends a request on the client's behalf (its reader gets finish_reason ``abort``)."""
        state = self.states.get(rid)
        if state is None or state.done:
            return False
        state.done = True
        self.upstream.abort([rid])
        state.push(Chunk(finish_reason="abort"))
        return True

    def on_outputs(self, outputs: list[SchedOutput]) -> None:
        for out in outputs:
            state = self.states.get(out.rid)
            if state is not None and not state.done:
                state.push(self._chunk(state, out))

    def fail_all(self, message: str) -> None:
        """The scheduler link broke: every running request ends with an error."""
        for state in list(self.states.values()):
            if not state.done:
                state.done = True
                state.push(Chunk(finish_reason="error", error=message))

    def _chunk(self, state: _State, out: SchedOutput) -> Chunk:
        text = state.detok.feed(out.token_ids)
        finish = out.finish_reason
        if finish is not None:
            text += state.detok.flush()
        text, matched = state.stop.feed(text)
        if matched and finish is None:
            finish = "stop"
            self.upstream.abort([out.rid])  # the scheduler stops; its later outputs are dropped
        elif finish is not None and not matched:
            text += state.stop.flush()
        if finish is not None:
            state.done = True
        return Chunk(
            text=text,
            token_ids=list(out.token_ids),
            logprobs=list(out.logprobs or []),
            finish_reason=finish,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            cached_tokens=out.cached_tokens,
            error=out.error,
        )
