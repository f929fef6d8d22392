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
    """Apply ``out`` to the step's ``(request, version, sample)`` entries, appending events.

    Finish rules: a stop token (EOS unless ignore_eos, or stop_token_ids) once more than
    min_new_tokens were generated, first, so that a last token that is EOS reports ``stop``; then
    max_new_tokens and the context length (``length``).
    """
    # NOTE: hot loop (once per request per step); check_finish and make_event are inlined.
    ctx = sched.info.max_context_len
    tokens = out.token_ids
    logprobs = out.logprobs
    top_logprobs = out.top_logprobs
    produced = 0
    for i, (req, version, sample) in enumerate(entries):
        if not sample or req.version != version or req.finish_reason is not None:
            continue  # a mid-prefill chunk, a retracted request, or one already finished
        req.pending_samples -= 1
        tok = tokens[i]
        output_ids = req.output_ids
        output_ids.append(tok)
        lp = None
        if logprobs is not None and req.sampling.logprobs:
            lp = [logprobs[i]]
            req.output_logprobs.append(logprobs[i])
        n_in, n_out = len(req.input_ids), len(output_ids)
        # NOTE: the worker masks stop tokens before min_new_tokens; this guards the rule anyway.
        if tok in req.stop_set and n_out > req.sampling.min_new_tokens:
            sched._on_finished(req, FinishReason.stop(tok))
        elif n_out >= req.sampling.max_new_tokens or n_in + n_out >= ctx:
            sched._on_finished(req, _LENGTH)
        event = TokenEvent(req.rid, [tok], lp, req.finish_reason, n_in, n_out, req.cached_tokens)
        if top_logprobs is not None and top_logprobs[i] is not None:
            event.top_logprobs = [top_logprobs[i]]
        events.append(event)
        produced += 1
    sched.generated_tokens_total += produced
