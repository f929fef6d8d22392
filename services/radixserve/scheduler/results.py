"""Reading a step's result: append sampled tokens, apply the finish rules, make the outputs.

It decides which requests finished and why; ``Scheduler`` ends them (frees slots and rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from radixserve.common.outputs import FinishReason, RequestOutput
from radixserve.common.types import StepOutput
from radixserve.scheduler.request import Request

logger = logging.getLogger(__name__)

_LENGTH = FinishReason.length()


@dataclass
class ResultDecision:
    events: list[RequestOutput] = field(default_factory=list)
    finished: list[tuple[Request, FinishReason]] = field(default_factory=list)
    produced: int = 0  # tokens appended to requests


def make_event(req: Request, toks: list[int], lp: list[float] | None) -> RequestOutput:
    return RequestOutput(
        rid=req.rid,
        token_ids=toks,
        logprobs=lp,
        finish_reason=req.finish_reason,
        prompt_tokens=len(req.input_ids),
        completion_tokens=len(req.output_ids),
        cached_tokens=req.cached_tokens,
    )


def read_result(
    entries: list[tuple[Request, int, bool]], out: StepOutput, max_context_len: int
) -> ResultDecision:
    """Apply ``out`` to the step's ``(request, version, sample)`` entries.

    Finish rules: a stop token (``req.stop_set``: stop_token_ids, and EOS unless ignore_eos
    without a grammar) once more than min_new_tokens were generated, first, so that a last token
    that is EOS reports ``stop``; then max_new_tokens and the context length (``length``).
    """
    # NOTE: hot loop (once per request per step); the finish check and make_event are inlined.
    decision = ResultDecision()
    events, finished = decision.events, decision.finished
    ctx = max_context_len
    tokens = out.token_ids
    logprobs = out.logprobs
    top_logprobs = out.top_logprobs
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
        reason = None
        # NOTE: the worker masks stop tokens before min_new_tokens; this guards the rule anyway.
        if tok in req.stop_set and n_out > req.sampling.min_new_tokens:
            reason = FinishReason.stop(tok)
        elif n_out >= req.sampling.max_new_tokens or n_in + n_out >= ctx:
            reason = _LENGTH
        if reason is not None:
            finished.append((req, reason))
        event = RequestOutput(req.rid, [tok], lp, reason, n_in, n_out, req.cached_tokens)
        if top_logprobs is not None:
            top = top_logprobs[i]
            if top is not None:
                event.top_logprobs = [top]
        events.append(event)
    decision.produced = len(events)
    return decision
