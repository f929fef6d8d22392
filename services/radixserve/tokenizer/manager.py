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

from radixserve.common.errors import Overloaded, Unavailable
from radixserve.common.outputs import FinishKind, RequestOutput
from radixserve.common.types import TopLogprobs
from radixserve.common.vocab.loading import Tokenizer
from radixserve.tokenizer.detokenizer import IncrementalDetokenizer
from radixserve.tokenizer.limits import Limits
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.tokenizer.stop import StopStringMatcher

logger = logging.getLogger(__name__)
# A Chunk's finish reasons, as the front doors print them.
_STOP, _ABORT, _ERROR = FinishKind.STOP.value, FinishKind.ABORT.value, FinishKind.ERROR.value


@dataclass
class Chunk:
    """What a client receives: new text and ids since its last chunk."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None  # a FinishKind's value: "stop", "length", ...
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    error: str = ""
    index: int = 0  # which of a request's n samples this chunk belongs to
    top_logprobs: list[TopLogprobs] = field(default_factory=list)  # one per token when asked

    def merge(self, later: Chunk) -> None:
        self.text += later.text
        self.token_ids += later.token_ids
        self.logprobs += later.logprobs
        self.top_logprobs += later.top_logprobs
        self.finish_reason = later.finish_reason
        self.error = later.error or self.error
        self.prompt_tokens = later.prompt_tokens or self.prompt_tokens
        self.completion_tokens = later.completion_tokens or self.completion_tokens
        self.cached_tokens = later.cached_tokens or self.cached_tokens


class Upstream(Protocol):
    def add(self, reqs: list[GenerateInput]) -> None: ...
    def abort(self, rids: list[str]) -> None: ...


class _State:
    def __init__(self, req: GenerateInput, tokenizer: Tokenizer, interval: int) -> None:
        self.req = req
        self.detok = IncrementalDetokenizer(
            tokenizer, req.skip_special_tokens, prompt_ids=req.input_ids
        )
        self.stop = StopStringMatcher(req.stop, req.include_stop_str_in_output)
        self.pending: list[Chunk] = []
        self.pending_tokens = 0
        self.interval = interval
        self.event = asyncio.Event()
        self.done = False

    def push(self, chunk: Chunk) -> None:
        """Queues ``chunk``; wakes the reader once ``interval`` new tokens wait or it finished."""
        self.pending.append(chunk)
        self.pending_tokens += len(chunk.token_ids)
        if self.pending_tokens >= self.interval or chunk.finish_reason is not None:
            self.event.set()

    def take(self) -> Chunk:
        chunks, self.pending, self.pending_tokens = self.pending, [], 0
        merged = chunks[0]
        for later in chunks[1:]:
            merged.merge(later)
        return merged


class RequestManager:
    """``stream_interval``: a reader wakes when this many new tokens wait (or on finish)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        upstream: Upstream,
        stream_interval: int = 1,
        max_running: int = 0,
        limits: Limits | None = None,
        timeout: float = 0.0,
    ) -> None:
        if stream_interval < 1:
            raise ValueError(f"stream_interval: must be >= 1, got {stream_interval}")
        self.tokenizer = tokenizer
        self.upstream = upstream
        self.stream_interval = stream_interval
        self.max_running = max_running  # 0: unbounded
        self.limits = limits or Limits()
        self.timeout = timeout  # seconds a request may run; 0: no bound
        self.draining = False  # SIGTERM: running requests finish, new ones are refused
        self.states: dict[str, _State] = {}

    @property
    def num_running(self) -> int:
        return len(self.states)

    def generate(self, req: GenerateInput) -> AsyncIterator[Chunk]:
        """Sends ``req`` upstream now and returns its stream of coalesced chunks.

        The last chunk has a finish_reason. Closing the stream early (client gone) aborts the
        request upstream. Raises ValueError at once for a duplicate rid, Overloaded when
        ``max_running`` requests run already, and whatever the upstream raises (nothing stays
        registered then).
        """
        return self.generate_many([req])[0]

    def generate_many(self, reqs: list[GenerateInput]) -> list[AsyncIterator[Chunk]]:
        """Like :meth:`generate` for requests that travel upstream together (one message, one
        scheduler: the n samples of one client request)."""
        rids = [r.rid for r in reqs]
        taken = next((rid for rid in rids if rid in self.states), None)
        if taken is not None or len(set(rids)) != len(rids):
            raise ValueError(f"rid: {taken or rids[0]!r} is already running")
        self.check_accepting()
        self.limits.check(reqs[0])
        if self.max_running and len(self.states) + len(reqs) > self.max_running:
            raise Overloaded(
                f"too many requests in flight (max_concurrent_requests={self.max_running})"
            )
        states = [_State(r, self.tokenizer, self.stream_interval) for r in reqs]
        for state in states:
            self.states[state.req.rid] = state
        try:
            self.upstream.add(list(reqs))
        except BaseException:
            for state in states:  # NOTE: a request refused upstream must not stay registered
                del self.states[state.req.rid]
            raise
        return [self._stream(state) for state in states]

    async def _stream(self, state: _State) -> AsyncIterator[Chunk]:
        rid = state.req.rid
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout if self.timeout > 0 else None
        try:
            while True:
                if deadline is None:
                    await state.event.wait()
                elif not await _wait_until(state.event, deadline - loop.time()):
                    self._expire(state)
                state.event.clear()
                merged = state.take()
                yield merged
                if merged.finish_reason is not None:
                    return
        finally:
            if self.states.pop(rid, None) is not None and not state.done:
                self.upstream.abort([rid])

    def check_accepting(self) -> None:
        """Unavailable while draining, before any work is spent on a new request."""
        if self.draining:
            raise Unavailable("the server is shutting down")

    def _expire(self, state: _State) -> None:
        """``timeout`` passed: the request is aborted upstream and ends with an explanation."""
        if not state.done:
            state.done = True
            self.upstream.abort([state.req.rid])
            message = f"request_timeout_seconds ({self.timeout:g}) passed"
            state.push(Chunk(finish_reason=_ABORT, error=message))

    def abort(self, rid: str) -> bool:
        """Ends a request on the client's behalf (its reader gets finish_reason ``abort``).

        ``rid`` may also name a client request of n samples (``<rid>#<i>``): all of them end.
        """
        rids = [rid] if rid in self.states else self._samples_of(rid)
        found = False
        for one in rids:
            state = self.states[one]
            if not state.done:
                state.done = found = True
                self.upstream.abort([one])
                state.push(Chunk(finish_reason=_ABORT))
        return found

    def _samples_of(self, rid: str) -> list[str]:
        prefix = f"{rid}#"
        return [r for r in self.states if r.startswith(prefix)]

    def on_outputs(self, outputs: list[RequestOutput]) -> None:
        for out in outputs:
            state = self.states.get(out.rid)
            if state is not None and not state.done:
                state.push(self._chunk(state, out))

    def fail_all(self, message: str) -> None:
        """The scheduler link broke: every running request ends with an error."""
        self.fail(list(self.states), message)

    def fail(self, rids: list[str], message: str) -> None:
        """One scheduler link broke: its requests end with an error."""
        for rid in rids:
            state = self.states.get(rid)
            if state is not None and not state.done:
                state.done = True
                state.push(Chunk(finish_reason=_ERROR, error=message))

    def _chunk(self, state: _State, out: RequestOutput) -> Chunk:
        text = state.detok.feed(out.token_ids)
        finish = None if out.finish_reason is None else out.finish_reason.kind.value
        if finish is not None:
            text += state.detok.flush()
        if out.completion_tokens <= state.req.sampling.min_new_tokens and finish is None:
            matched = False  # NOTE: like stop tokens, stop strings wait for min_tokens (vLLM too)
        else:
            text, matched = state.stop.feed(text)
        if matched and finish is None:
            finish = _STOP
            self.upstream.abort([out.rid])  # the scheduler stops; its later outputs are dropped
        elif finish is not None and not matched:
            text += state.stop.flush()
        if finish is not None:
            state.done = True
        return Chunk(
            text=text,
            token_ids=list(out.token_ids),
            logprobs=list(out.logprobs or []),
            top_logprobs=list(out.top_logprobs or []),
            finish_reason=finish,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            cached_tokens=out.cached_tokens,
            error=out.error,
        )


async def _wait_until(event: asyncio.Event, seconds: float) -> bool:
    """True when ``event`` is set within ``seconds``.

    NOTE: not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that lands as the
    event is set (a decode step sets it every few ms), so a client that went away would not
    abort its request; ``asyncio.wait`` lets the cancellation through."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(seconds, 0.0))
    finally:
        waiter.cancel()
    return event.is_set()
