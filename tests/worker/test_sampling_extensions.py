"""Penalties, min_new_tokens and top logprobs on the worker, against transformers' logits."""

from __future__ import annotations

import itertools

import pytest
import torch

from radixserve.common.types import ForwardMode, ReqInput, SamplingParams, StepInput
from radixserve.worker.engine import ModelRunner, RunnerConfig
from radixserve.worker.penalties import PenaltyBank, apply_penalties

E, D = ForwardMode.EXTEND, ForwardMode.DECODE
PROMPT = [77] * 8  # greedy repeats itself after it: [28, 28, 28, ...]
PENALIZED = SamplingParams(
    temperature=0.0, repetition_penalty=1.8, frequency_penalty=1.5, presence_penalty=0.7
)


@pytest.fixture(scope="module")
def runner_and_hf(tiny_models):
    path, hf_model = tiny_models["tied"]
    return ModelRunner(RunnerConfig(model=path, num_slots=1024, max_rows=4)), hf_model


def _reference_penalized(logits, prompt, output, sp: SamplingParams) -> torch.Tensor:
    """Element by element, the formulas of services.worker.penalties."""
    out = logits.clone()
    for t in set(prompt) | set(output):
        r = sp.repetition_penalty
        out[t] = out[t] / r if out[t] > 0 else out[t] * r
    for t in set(output):
        out[t] -= sp.frequency_penalty * output.count(t) + sp.presence_penalty
    return out


def _generate(runner, prompt, n, sp, row=0, prefix=None, slots=None):
    """Prefill (optionally over a cached prefix: (slots, ids)) then decode; step outputs."""
    slots = slots or itertools.count(1)
    pre_slots, pre_ids = prefix or (None, None)
    req = ReqInput(row, [next(slots) for _ in prompt], list(prompt), pre_slots, sp)
    req.prompt_len = len(prompt) + len(pre_ids or ())
    req.prefix_ids = pre_ids
    outs = [runner.step(StepInput(0, E, [req]))]
    for i in range(n - 1):
        outs.append(runner.step(StepInput(i + 1, D, [ReqInput(row, [next(slots)])])))
    runner.release([row])
    return outs


def test_apply_penalties_matches_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 16, generator=g)
    prompts, outputs = [[1, 2, 2], [], [5]], [[2, 3, 3, 3], [7], []]
    params = [
        SamplingParams(repetition_penalty=1.3, frequency_penalty=0.4, presence_penalty=-0.2),
        SamplingParams(frequency_penalty=-1.0),
        SamplingParams(repetition_penalty=0.5, presence_penalty=2.0),
    ]
    bank = PenaltyBank(16, torch.device("cpu"))
    slots = [bank.acquire() for _ in range(5)][2:]  # grows past its first size
    for slot, prompt, output in zip(slots, prompts, outputs, strict=True):
        bank.record([slot] * len(prompt), prompt, [False] * len(prompt))
        bank.record([slot] * len(output), output, [True] * len(output))
    got = logits.clone()
    bank.apply(got, [0, 1, 2], slots, params)
    for i in range(3):
        ref = _reference_penalized(logits[i], prompts[i], outputs[i], params[i])
        torch.testing.assert_close(got[i], ref)
    # The vectorized function alone, no-op coefficients leave the logits as they are.
    same = apply_penalties(
        logits, bank.counts[slots], bank.seen[slots], torch.ones(3), torch.zeros(3), torch.zeros(3)
    )
    torch.testing.assert_close(same, logits)


def test_penalized_greedy_matches_transformers_reference(runner_and_hf):
    runner, hf = runner_and_hf
    ours = [o.token_ids[0] for o in _generate(runner, PROMPT, 6, PENALIZED)]
    plain = [o.token_ids[0] for o in _generate(runner, PROMPT, 6, SamplingParams(temperature=0))]
    seq, ref = list(PROMPT), []
    with torch.no_grad():
        for _ in range(6):
            logits = hf(torch.tensor([seq])).logits[0, -1].float()
            tok = int(_reference_penalized(logits, PROMPT, ref, PENALIZED).argmax())
            ref.append(tok)
            seq.append(tok)
    assert ours == ref
    assert ours != plain  # the penalties did something on this prompt
    assert not runner.num_live_rows and not runner.rows.num_adjusted
    assert len(runner.penalties._free) == runner.penalties.capacity


def test_penalties_over_a_cached_prefix_use_prefix_ids(runner_and_hf):
    runner, _ = runner_and_hf
    whole = [
        o.token_ids[0] for o in _generate(runner, PROMPT, 4, PENALIZED, slots=iter(range(1, 99)))
    ]
    # Slots 1..4 still hold the KV of PROMPT[:4]: reuse them as a cached prefix on another row.
    cut = 4
    rest = _generate(
        runner, PROMPT[cut:], 4, PENALIZED, row=2,
        prefix=([1, 2, 3, 4], PROMPT[:cut]), slots=iter(range(200, 300)),
    )  # fmt: skip
    assert [o.token_ids[0] for o in rest] == whole


def test_min_new_tokens_masks_stop_tokens(runner_and_hf):
    runner, _ = runner_and_hf
    free = [o.token_ids[0] for o in _generate(runner, PROMPT, 3, SamplingParams(temperature=0))]
    stops = tuple(free)  # every token greedy would pick is a stop token now
    held = SamplingParams(temperature=0, stop_token_ids=stops, min_new_tokens=2)
    got = [o.token_ids[0] for o in _generate(runner, PROMPT, 3, held)]
    assert got[0] not in stops and got[1] not in stops
    unheld = SamplingParams(temperature=0, stop_token_ids=stops, min_new_tokens=0)
    assert _generate(runner, PROMPT, 1, unheld)[0].token_ids[0] == free[0]


def test_top_logprobs_match_log_softmax(runner_and_hf):
    runner, hf = runner_and_hf
    k = 5
    asks = SamplingParams(temperature=0, logprobs=True, top_logprobs=k, repetition_penalty=1.5)
    slots = itertools.count(1)
    reqs = [
        ReqInput(0, [next(slots) for _ in PROMPT], PROMPT, None, asks, prompt_len=len(PROMPT)),
        ReqInput(1, [next(slots) for _ in PROMPT], PROMPT, None, SamplingParams(temperature=0)),
    ]
    out = runner.step(StepInput(0, E, reqs, release_rows=[0, 1]))
    with torch.no_grad():
        ref = torch.log_softmax(hf(torch.tensor([PROMPT])).logits[0, -1].float(), dim=-1)
    values, ids = ref.topk(k)
    top = out.top_logprobs[0]
    assert list(top.token_ids) == ids.tolist()
    torch.testing.assert_close(torch.tensor(top.logprobs), values, atol=1e-4, rtol=0)
    assert out.top_logprobs[1] is None
    # The chosen token's logprob is of the raw distribution, whatever the penalty chose.
    assert abs(out.logprobs[0] - float(ref[out.token_ids[0]])) < 1e-4
