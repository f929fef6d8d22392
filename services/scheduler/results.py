"""Applying a step's result: append sampled tokens, apply the finish rules, make token events."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from services.common.types import StepOutput
from services.scheduler.request import FinishReason, Request, TokenEvent

if TYPE_CHECKING:
    from services.scheduler.scheduler import Scheduler

logger = logging.getLogger(__name__)

_LENGTH = FinishReason.length()


def check_finish(req: Request, tok: int, max_context_len: int) -> FinishReason | None:
    """Stop/EOS first (so a last token that is EOS reports ``stop``), then the length limits."""
    if tok in req.stop_set:
        return FinishReason.stop(tok)
    if len(req.output_ids) >= req.sampling.max_new_tokens:
        return _LENGTH
    if len(req.input_ids) + len(req.output_ids) >= max_context_len:
        return _LENGTH
    return None


def make_event(req: Request, toks: list[int], lp: list[float] | None) -> TokenEvent:
    return TokenEvent(
        rid=req.rid,
        token_ids=toks,
        logprobs=lp,
        finish_reason=req.finish_reason,
        prompt_tokens=len(req.input_ids),
        completion_tokens=len(req.output_ids),
        cached_tokens=req.cached_tokens,
    )


def apply_result(
    sched: Scheduler,
    entries: list[tuple[Request, int, bool]],
    out: StepOutput,
    events: list[TokenEvent],
) -> None:
    """Apply ``out`` to the step's ``(request, version, sample)`` entries, appending events."""
    ctx = sched.info.max_context_len
    tokens = out.token_ids
    logprobs = out.logprobs
    for i, (req, version, sample) in enumerate(entries):
        if not sample or req.version != version or req.finish_reason is not None:
            continue  # a mid-prefill chunk, a retracted request, or one already finished
        req.pending_samples -= 1
        tok = tokens[i]
        req.output_ids.append(tok)
        lp = None
        if logprobs is not None and req.sampling.logprobs:
            lp = [logprobs[i]]
            req.output_logprobs.append(logprobs[i])
        reason = check_finish(req, tok, ctx)
        if reason is not None:
            sched._on_finished(req, reason)
        events.append(make_event(req, [tok], lp))
    sched.generated_tokens_total += len(events)
