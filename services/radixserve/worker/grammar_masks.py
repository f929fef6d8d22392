"""Grammar rows' token bitmasks on the host: advancing the matchers and filling the masks.

:class:`MaskBuilder` owns the CPU int32 bitmask buffer (bit ``t`` of a row set = token ``t``
allowed; pinned on CUDA) and the llguidance executor that fills many rows in parallel native
threads without the GIL.

Overlap (``overlap=True``, the default): as soon as a step's sampled ids are on the host,
:meth:`MaskBuilder.after_sampling` hands them to one background thread, which advances each row's
matcher and fills that row's mask for the next step, while the step thread answers the step and
builds and launches the next forward. The next step waits for that thread only right before it
masks its logits (:meth:`MaskBuilder.masks`); its rows with a mask made ahead use it, the others
(a row's first sampled step, or a re-prefilled row's replay) are filled then. A mask is a function
of the matcher's state alone, so the tokens are the same with the overlap on or off; off, the
matchers advance right after sampling and every mask is filled right before it is applied.

``ignore_eos`` under a grammar: while the grammar can go on, its end tokens are masked out (the
request keeps generating inside the grammar); once the grammar can only end (the matcher is
stopped), only the row's stop tokens and the model's EOS are allowed, and the scheduler ends a
constrained request on EOS even with ``ignore_eos`` (``Request.stop_ids``), so a finished grammar
never makes a request emit EOS until ``max_tokens``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class GrammarState:
    """One constrained row's matcher and what its masks need."""

    matcher_future: concurrent.futures.Future
    stop_ids: tuple[int, ...]  # the row's stop_token_ids, then the model's EOS
    own_stops: tuple[int, ...]  # the row's stop_token_ids alone
    ignore_eos: bool = False
    finished: bool = False  # a stop token was sampled, or the grammar ended or failed
    replay: list[int] = field(default_factory=list)  # re-prefilled output, consumed on first use
    ahead: MaskJob | None = None  # the job that filled this row's next mask, at ``slot``
    slot: int = -1

    def matcher(self):  # noqa: ANN201 - llguidance.LLMatcher
        """The matcher once compiled, with any re-prefilled output replayed into it."""
        matcher = self.matcher_future.result()  # NOTE: waits only for a grammar still compiling
        if self.replay:
            tokens, self.replay = self.replay, []
            if not matcher.consume_tokens(tokens) or matcher.is_stopped():
                self.finished = True
        return matcher


@dataclass(eq=False)
class MaskJob:
    """Masks filled ahead: buffer row ``i`` is ``states[i]``'s next mask once ``future`` is done."""

    states: list[GrammarState]
    future: concurrent.futures.Future | None = None


@dataclass
class MaskStats:
    """Host time on grammar masks (seconds) and rows filled ahead or at sampling time."""

    work_seconds: float = 0.0  # advancing matchers and filling masks, on either thread
    exposed_seconds: float = 0.0  # of which the step thread spent or waited between forwards
    rows_ahead: int = 0
    rows_late: int = 0


class MaskBuilder:
    """Advances grammar matchers and fills their bitmask rows (see the module docstring)."""

    def __init__(
        self,
        vocab_size: int,
        pin: bool,
        model_eos: Sequence[int],
        ll_eos: Callable[[], Sequence[int]],
        overlap: bool = True,
    ) -> None:
        self.vocab_size = vocab_size
        self.pin = pin
        self.model_eos = tuple(model_eos)
        self._ll_eos = ll_eos  # the grammar vocabulary's end tokens (loads it on first call)
        self.overlap = overlap
        self.stats = MaskStats()
        self._host: torch.Tensor | None = None
        self._executor = None  # llguidance.LLExecutor, made with the first mask
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._job: MaskJob | None = None

    def after_sampling(self, pairs: list[tuple[GrammarState, int]]) -> None:
        """Each row's matcher consumes the token it sampled; with overlap, on the mask thread,
        which then fills these rows' next masks."""
        if not pairs:
            return
        start = time.perf_counter()
        if self.overlap:
            self.wait()  # NOTE: one job at a time: it owns the buffer and its rows' matchers
            job = MaskJob([s for s, _ in pairs])
            for i, state in enumerate(job.states):
                state.ahead, state.slot = job, i
            # NOTE: pinned memory is allocated here, never on the mask thread: there it could
            # open a CUDA context on device 0 instead of this worker's device.
            self._buffer(len(job.states))
            job.future = self._thread_().submit(self._advance_and_fill, pairs)
            self._job = job
        else:
            _advance(pairs)
            self.stats.work_seconds += time.perf_counter() - start
        self.stats.exposed_seconds += time.perf_counter() - start

    def masks(self, states: list[GrammarState]) -> tuple[torch.Tensor, list[int]]:
        """Host bitmask rows for ``states`` and, for each row, the index of its state.

        Rows filled ahead come first, moved down in place, then the others, filled now.
        """
        start = time.perf_counter()
        job = self.wait()
        ahead = sorted(
            (s.slot, k)
            for k, s in enumerate(states)
            if job is not None and s.ahead is job and not s.replay
        )
        late = [k for k, s in enumerate(states) if job is None or s.ahead is not job or s.replay]
        buf = self._buffer(max(len(states), len(job.states) if job is not None else 0))
        for i, (slot, _) in enumerate(ahead):
            if slot != i:  # slots ascend, so row i is never overwritten before it is read
                buf[i].copy_(buf[slot])
        if late:
            fill_start = time.perf_counter()
            self._fill([states[k] for k in late], len(ahead))
            self.stats.work_seconds += time.perf_counter() - fill_start
        self.stats.rows_ahead += len(ahead)
        self.stats.rows_late += len(late)
        self.stats.exposed_seconds += time.perf_counter() - start
        return buf[: len(states)], [k for _, k in ahead] + late

    def wait(self) -> MaskJob | None:
        """The last job, done (re-raising its error), and no longer pending."""
        job, self._job = self._job, None
        if job is not None and job.future is not None:
            job.future.result()
        return job

    # ---- internals -----------------------------------------------------------------------

    def _advance_and_fill(self, pairs: list[tuple[GrammarState, int]]) -> None:
        start = time.perf_counter()
        _advance(pairs)
        self._fill([s for s, _ in pairs], 0)
        self.stats.work_seconds += time.perf_counter() - start

    def _fill(self, states: list[GrammarState], first: int) -> None:
        """Fills buffer rows ``first...`` with the next masks of ``states``."""
        import llguidance.torch as llt

        end = first + len(states)
        buf = self._host[:end]
        buf[first:].zero_()
        live = []
        for i, state in enumerate(states, first):
            matcher = state.matcher()
            if state.finished or matcher.is_stopped() or matcher.is_error():
                # NOTE: never an empty mask: without stop ids, the vocabulary's end tokens.
                _set(buf[i], state.stop_ids or tuple(self._ll_eos()), self.vocab_size, True)
            else:
                live.append((matcher, i, state))
        if not live:
            return
        llt.fill_next_token_bitmask_par(self._executor_(), [(m, i) for m, i, _ in live], buf)
        for matcher, i, state in live:
            if matcher.is_accepting():
                self._may_end(buf[i], state)

    def _may_end(self, bits: torch.Tensor, state: GrammarState) -> None:
        """An accepting row: its own stop tokens end it too; with ignore_eos, EOS does not while
        the grammar can go on."""
        if state.ignore_eos:
            ends = tuple(t for t in (*self._ll_eos(), *self.model_eos) if t not in state.own_stops)
            _set(bits, ends, self.vocab_size, False)
            if not bool(bits.any()):  # nothing but an end was allowed: the grammar can only end
                _set(bits, state.stop_ids, self.vocab_size, True)
        _set(bits, state.own_stops, self.vocab_size, True)

    def _buffer(self, n: int) -> torch.Tensor:
        """The ``[>= n, ceil(V / 32)]`` int32 host buffer, grown with its rows kept."""
        if self._host is None or self._host.shape[0] < n:
            words = (self.vocab_size + 31) // 32
            rows = max(n, 64, 0 if self._host is None else 2 * self._host.shape[0])
            # NOTE: a normal tensor (not an inference one): both threads write it, in or out
            # of inference mode.
            with torch.inference_mode(False):
                new = torch.zeros((rows, words), dtype=torch.int32, pin_memory=self.pin)
            if self._host is not None:
                new[: self._host.shape[0]] = self._host
            self._host = new
        return self._host

    def _thread_(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="masks")
        return self._thread

    def _executor_(self):  # noqa: ANN202 - llguidance.LLExecutor, imported lazily
        if self._executor is None:
            import llguidance

            self._executor = llguidance.LLExecutor()
        return self._executor


def _advance(pairs: list[tuple[GrammarState, int]]) -> None:
    for state, token in pairs:
        if state.finished:
            continue
        matcher = state.matcher_future.result()
        if token in state.stop_ids:
            state.finished = True  # the request ends here; the grammar has nothing to add
        elif not matcher.consume_token(token) or matcher.is_stopped():
            state.finished = True
            if matcher.is_error():
                logger.warning("grammar matcher failed: %s", matcher.get_error())


def _set(bits: torch.Tensor, ids: Sequence[int], vocab_size: int, on: bool) -> None:
    """Sets (or clears) the bits of ``ids`` in one bitmask row (int32 words, two's complement)."""
    for t in ids:
        if 0 <= t < vocab_size:
            word = int(bits[t // 32]) & 0xFFFFFFFF
            word = word | (1 << (t % 32)) if on else word & ~(1 << (t % 32))
            bits[t // 32] = word - (1 << 32) if word >= 1 << 31 else word
