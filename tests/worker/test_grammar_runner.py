"""The model runner with grammar rows beside plain ones: masks follow each row, the others are
untouched (CPU here; on a GPU the decode steps replay CUDA graphs)."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import pytest

from radixserve.common.model_source import resolve_model
from radixserve.common.types import (
    Constraint,
    ForwardMode,
    ReqInput,
    SamplingParams,
    StepInput,
)
from radixserve.common.vocab.loading import load_tokenizer
from radixserve.scheduler.request import Request
from radixserve.scheduler.scheduler import Scheduler, SchedulerCoreConfig
from radixserve.worker.engine import ModelRunner, RunnerConfig
from radixserve.worker.parallel.group import TPGroup

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


def _serve(config: str, overlap: bool) -> tuple[dict[str, list[int]], object]:
    """Requests arriving over time through the real scheduler core, one step in flight ahead
    (as the service runs), on 3 rows: rows finish, are released and are reused."""
    cfg = RunnerConfig(
        model=config, load_format="dummy", device="cpu", dtype="float32", num_slots=1024,
        max_rows=3, grammar_overlap=overlap,
    )  # fmt: skip
    runner = ModelRunner(cfg)
    core = Scheduler(SchedulerCoreConfig(), runner.info)
    schema = '{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}'
    grammars = [
        (Constraint("regex", "[a-z]{2,9}"), False),
        (Constraint("choice", '["yes", "no", "maybe"]'), True),
        (Constraint("json_schema", schema), False),
        (None, True),
        (Constraint("regex", "(ab|c)+"), True),
        (Constraint("ebnf", 'start: "x" ("y" | "z")*'), False),
    ]
    reqs = [
        Request(f"r{i}", [5 + i, 9, 14, 20], SamplingParams(
            temperature=1.0, seed=i, max_new_tokens=12, ignore_eos=ignore, constraint=grammar))
        for i, (grammar, ignore) in enumerate(grammars)
    ]  # fmt: skip
    pending, in_flight, steps = list(reqs), deque(), 0
    while pending or core.has_work:
        if pending and steps % 2 == 0:
            core.add_request(pending.pop(0))
        while len(in_flight) < 2 and (step := core.next_step()) is not None:
            in_flight.append(step)
        if in_flight:
            core.on_result(runner.step(in_flight.popleft()))
        steps += 1
    return {r.rid: r.output_ids for r in reqs}, runner.constraints.stats


def test_overlapped_masks_give_the_same_tokens(tmp_path: Path) -> None:
    config = tmp_path / "config.json"  # the tiny model, with the dummy vocabulary's EOS
    config.write_text(json.dumps({**json.loads(Path(CONFIG).read_text()), "eos_token_id": 2}))
    on, stats_on = _serve(str(config), True)
    off, stats_off = _serve(str(config), False)
    assert on == off
    assert stats_on.rows_ahead > 0 and stats_on.rows_late > 0  # both paths were taken
    assert stats_off.rows_ahead == 0
    vocab = load_tokenizer(resolve_model(str(config), "dummy"))
    eos = 2
    text = {rid: vocab.decode([t for t in ids if t != eos]) for rid, ids in on.items()}
    # ignore_eos, but the choice is complete: one EOS ends it ("stop"), not 12 tokens of EOS.
    assert text["r1"] in ("yes", "no", "maybe") and on["r1"].count(eos) == 1
    assert on["r1"][-1] == eos
    assert text["r0"].isalpha() and text["r5"].startswith("x") and set(text["r4"]) <= set("abc")
    assert eos not in on["r4"]  # "(ab|c)+" can always go on: ignore_eos keeps EOS out


def test_tp_follower_keeps_no_matchers() -> None:
    # A follower rank (rank 1; size 1 here, so no collectives) never samples: it must not
    # compile grammars or keep matchers, only run the forward.
    cfg = RunnerConfig(model=CONFIG, load_format="dummy", device="cpu", num_slots=64, max_rows=2)
    runner = ModelRunner(cfg, tp=TPGroup(rank=1, size=1))
    sp = SamplingParams(constraint=Constraint("regex", "ab"), logit_bias=((7, 1.0),))
    req = ReqInput(0, list(range(1, 1 + len(PROMPT))), list(PROMPT), sampling=sp, prompt_len=6)
    out = runner.step(StepInput(1, ForwardMode.EXTEND, [req]))
    assert out.token_ids == [-1]
    assert runner.constraints.active == 0 and runner.constraints._pool is None
