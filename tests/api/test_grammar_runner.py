"""The model runner with grammar rows beside plain ones: masks follow each row, the others are
untouched (CPU here; on a GPU the decode steps replay CUDA graphs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from radixserve.services.common.model_source import resolve_model
from radixserve.services.common.types import (
    Constraint,
    ForwardMode,
    ReqInput,
    SamplingParams,
    StepInput,
)
from radixserve.services.tokenizer.tokenization import load_tokenizer
from radixserve.services.worker.engine import ModelRunner, RunnerConfig

CONFIG = str(Path(__file__).resolve().parents[2] / "bench/configs/tiny-llama.json")
PROMPT = [5, 9, 14, 20, 33, 41]
STEPS = 6


def _runner(device: str) -> ModelRunner:
    # float32 everywhere: the plain row's greedy tokens must not flip with the batch's size.
    cfg = RunnerConfig(
        model=CONFIG, load_format="dummy", device=device, dtype="float32", num_slots=512, max_rows=4
    )
    return ModelRunner(cfg)


def _generate(runner: ModelRunner, samplings: list[SamplingParams]) -> list[list[int]]:
    """Greedy tokens of each row, prefilled together then decoded together."""
    n = len(PROMPT)
    reqs = [
        ReqInput(row, list(range(1 + row * 64, 1 + row * 64 + n)), list(PROMPT), sampling=sp,
                 prompt_len=n)
        for row, sp in enumerate(samplings)
    ]  # fmt: skip
    out = runner.step(StepInput(1, ForwardMode.EXTEND, reqs))
    tokens = [[t] for t in out.token_ids]
    for k in range(STEPS - 1):
        decode = [ReqInput(row, [1 + row * 64 + n + k]) for row in range(len(samplings))]
        out = runner.step(StepInput(2 + k, ForwardMode.DECODE, decode))
        for row, t in enumerate(out.token_ids):
            tokens[row].append(t)
    runner.release(list(range(len(samplings))))
    return tokens


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_constrained_rows_beside_plain_ones(device: str) -> None:
    runner = _runner(device)
    plain = SamplingParams(temperature=0, max_new_tokens=STEPS, ignore_eos=True)
    alone = _generate(runner, [plain])[0]
    # The grammar allows only "ab" then "c"s, spelt in the dummy model's own vocabulary.
    grammar = SamplingParams(
        temperature=0, max_new_tokens=STEPS, constraint=Constraint("regex", "abc*")
    )
    biased = SamplingParams(temperature=0, max_new_tokens=STEPS, logit_bias=((7, 100.0),))
    mixed = _generate(runner, [plain, grammar, biased])
    assert mixed[0] == alone  # a plain row is unaffected by its constrained neighbours
    vocab = load_tokenizer(resolve_model(CONFIG, "dummy"))
    a, b, c = (vocab.encode(ch, add_special_tokens=False)[0] for ch in "abc")
    eos = 2  # the dummy vocabulary's </s>: after it, the row may only repeat an end token
    assert mixed[1][:2] == [a, b] and set(mixed[1][2:]) <= {c, eos}, mixed
    assert eos not in mixed[1] or set(mixed[1][mixed[1].index(eos) :]) == {eos}, mixed
    assert mixed[2] == [7] * STEPS
    assert runner.constraints.active == 0  # released rows leave nothing behind
