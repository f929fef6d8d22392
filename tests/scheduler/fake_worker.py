"""A fake worker that follows the step protocol, and a driver for the scheduler core.

The toy model reads its context back through the KV slots of the row: the next token is a hash
of the tokens stored at the row's slots. A slot freed too early and overwritten, a wrong prefix
or a row mix-up therefore changes the output, which the tests compare with :func:`reference`.
"""

from __future__ import annotations

import logging
from collections import deque

from radixserve.common.outputs import RequestOutput
from radixserve.common.types import ForwardMode, ModelInfo, StepInput, StepOutput
from radixserve.scheduler.scheduler import Scheduler

logger = logging.getLogger(__name__)

_MOD = (1 << 61) - 1


def toy_next(tokens: list[int], vocab: int, eos: int | None, eos_every: int) -> int:
    h = 7
    for t in tokens:
        h = (h * 1_000_003 + t + 1) % _MOD
    if eos is not None and eos_every and h % eos_every == 0:
        return eos
    tok = h % vocab
    return tok if tok != eos else (tok + 1) % vocab


def reference(
    prompt: list[int], max_new: int, info: ModelInfo, eos_every: int, stops: tuple[int, ...] = ()
) -> list[int]:
    """What a request should produce when nothing goes wrong."""
    eos = info.eos_token_ids[0] if info.eos_token_ids else None
    seq = list(prompt)
    out: list[int] = []
    while len(out) < max_new and len(seq) < info.max_context_len:
        tok = toy_next(seq, info.vocab_size, eos, eos_every)
        seq.append(tok)
        out.append(tok)
        if tok == eos or tok in stops:
            break
    return out


class FakeWorker:
    def __init__(self, info: ModelInfo, eos_every: int = 0) -> None:
        self.info = info
        self.eos = info.eos_token_ids[0] if info.eos_token_ids else None
        self.eos_every = eos_every
        self.kv: list[tuple[int, int] | None] = [None] * info.num_slots
        self.rows: dict[int, list[int]] = {}
        self.last: dict[int, int] = {}
        self.steps: list[StepInput] = []

    def run(self, step: StepInput) -> StepOutput:
        self.steps.append(step)
        assert step.reqs, "the worker refuses empty steps"
        toks = []
        seen_rows = set()
        for ri in step.reqs:
            assert ri.row not in seen_rows, "a row twice in one step"
            assert 0 <= ri.row < self.info.max_rows
            seen_rows.add(ri.row)
            assert step.mode != ForwardMode.DECODE or ri.is_decode
            assert step.mode != ForwardMode.EXTEND or not ri.is_decode
            assert len(self.rows.get(ri.row, ri.prefix_slots or [])) + ri.num_new_tokens <= (
                self.info.max_context_len
            )
            if ri.sampling is not None:  # a request's first step: the row starts over
                assert ri.prefix_slots is not None, "a first step without prefix_slots"
                self.rows[ri.row] = list(ri.prefix_slots)
            else:
                assert ri.prefix_slots is None, "prefix_slots without sampling"
                assert ri.row in self.rows, "a row with no request (never started or released)"
            row = self.rows[ri.row]
            ids = ri.token_ids if ri.token_ids is not None else [self.last[ri.row]]
            assert len(ids) == len(ri.new_slots) > 0
            for s, t in zip(ri.new_slots, ids, strict=True):
                assert 0 < s < self.info.num_slots, "slot out of range or padding slot"
                self.kv[s] = (t, len(row))
                row.append(s)
            if not ri.sample:
                toks.append(-1)
                continue
            ctx = []
            for pos, s in enumerate(row):
                t, p = self.kv[s]
                assert p == pos, f"slot {s} holds position {p}, row reads it at {pos}"
                ctx.append(t)
            tok = toy_next(ctx, self.info.vocab_size, self.eos, self.eos_every)
            self.last[ri.row] = tok
            toks.append(tok)
        for r in step.release_rows:
            # NOTE: like the real worker, rows are released after the step ran.
            assert r not in seen_rows, "row released in a step that uses it"
            self.rows.pop(r, None)
            self.last.pop(r, None)
        return StepOutput(step.step_id, toks, logprobs=[-0.5] * len(toks))


def drive(
    sched: Scheduler, worker: FakeWorker, overlap: bool = True, max_steps: int = 100_000
) -> list[RequestOutput]:
    """Run until idle; with ``overlap`` step N+1 is built before result N is applied."""
    pending: deque[StepOutput] = deque()
    events: list[RequestOutput] = []
    for _ in range(max_steps):
        if not sched.has_work:
            return events
        step = sched.next_step()
        if step is not None:
            pending.append(worker.run(step))
        limit = 1 if overlap else 0
        if pending and (len(pending) > limit or step is None):
            events += sched.on_result(pending.popleft())
        elif step is None:
            if sched.has_work and not pending:
                raise AssertionError("scheduler stalled: work left, nothing scheduled")
    raise AssertionError("too many steps")
