"""bench/bench_serving.py against the in-process stack with the embedded SmolLM2 (HTTP and gRPC)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from bench import bench_serving
from bench.serving.stats import percentile
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.timeout(120)  # starting the stack takes most of it

VOCAB = 49152  # the embedded SmolLM2's


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = start_stack(worker={"num_slots": 2048, "max_rows": 8})
    yield running
    running.stop()


def _run(tmp_path, argv: list[str]) -> dict:
    out = tmp_path / "result.json"
    common = ["--vocab-size", str(VOCAB), "--disable-tqdm", "--output-file", str(out)]
    assert bench_serving.main(argv + common) == 0
    return json.loads(out.read_text())


def _check(result: dict, expected_in: int, expected_out: int, n: int) -> None:
    assert result["completed"] == n and result["failed"] == 0
    # ignore_eos makes output lengths exact, and usage reports them.
    assert result["total_output_tokens"] == expected_out
    assert result["total_input_tokens"] == expected_in
    assert 0 < result["duration_s"] < 30
    assert result["output_throughput"] == pytest.approx(expected_out / result["duration_s"])
    total = (expected_in + expected_out) / result["duration_s"]
    assert result["total_token_throughput"] == pytest.approx(total)
    for key in ("ttft", "itl", "tpot", "e2e"):
        d = result[key]
        assert 0 < d["p50_ms"] <= d["p99_ms"] <= d["max_ms"] < 30_000, (key, d)
    assert result["ttft"]["max_ms"] <= result["e2e"]["max_ms"]
    assert result["tpot"]["mean_ms"] < result["e2e"]["mean_ms"]
    assert result["gpu"] is None  # no GPU here; its name on one
    assert result["config"]["num_prompts"] == n


def test_random_dataset_over_http(stack: Stack, tmp_path) -> None:
    argv = ["--base-url", stack.http_url, "--dataset", "random", "--num-prompts", "5"]
    argv += ["--input-len", "24", "--output-len", "8", "--random-range-ratio", "0.5"]
    args = bench_serving.parse_args(argv + ["--vocab-size", str(VOCAB)])
    reqs = bench_serving.build_requests(args, VOCAB)
    assert all(12 <= r.input_len <= 24 and 4 <= r.output_len <= 8 for r in reqs)
    result = _run(tmp_path, argv + ["--max-concurrency", "3"])
    _check(result, sum(r.input_len for r in reqs), sum(r.output_len for r in reqs), 5)
    assert result["config"]["backend"] == "openai" and not result["config"]["launch"]


def test_shared_prefix_over_grpc_at_a_rate(stack: Stack, tmp_path) -> None:
    argv = ["--backend", "grpc", "--grpc-address", stack.tokenizer_address]
    argv += ["--dataset", "shared-prefix", "--gsp-num-groups", "2", "--gsp-prompts-per-group", "2"]
    argv += ["--gsp-system-prompt-len", "32", "--gsp-question-len", "4", "--output-len", "6"]
    result = _run(tmp_path, argv + ["--request-rate", "20"])
    _check(result, 4 * 36, 4 * 6, 4)
    assert result["config"]["request_rate"] == "20.0"


def test_text_prompts_with_the_models_tokenizer(stack: Stack, tmp_path) -> None:
    # The stand-in vocabulary decodes ids to characters at once (the GGUF's would take seconds).
    argv = ["--base-url", stack.http_url, "--tokenizer", "smollm2-135m-instruct"]
    argv += ["--tokenizer-load-format", "dummy"]
    argv += ["--dataset", "fixed", "--num-prompts", "3", "--input-len", "16", "--output-len", "5"]
    result = _run(tmp_path, argv)
    assert result["completed"] == 3 and result["total_output_tokens"] == 15
    # The server re-tokenizes the text: 16 characters, about one to four BPE tokens each.
    assert 3 * 8 <= result["total_input_tokens"] <= 3 * 64


def test_percentile_matches_numpy_linear() -> None:
    np = pytest.importorskip("numpy")
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    for q in (0, 50, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert math.isnan(percentile([], 50))


def test_datasets_have_the_promised_shapes() -> None:
    from bench.serving import datasets

    fixed = datasets.fixed_requests(4, 10, 3, VOCAB)
    assert [(r.input_len, r.output_len) for r in fixed] == [(10, 3)] * 4
    assert all(datasets.FIRST_ID <= i < VOCAB for r in fixed for i in r.prompt_ids)
    lens = {(r.input_len, r.output_len) for r in datasets.random_requests(200, 40, 20, 0.0, VOCAB)}
    assert min(a for a, _ in lens) < 10 and max(a for a, _ in lens) == 40  # U[0*40, 40], >= 1
    assert all(1 <= b <= 20 for _, b in lens)
    shared = datasets.shared_prefix_requests(3, 4, 50, 5, 7, VOCAB)
    prefixes = {tuple(r.prompt_ids[:50]) for r in shared}
    assert len(shared) == 12 and len(prefixes) == 3
    assert all(r.input_len == 55 and r.output_len == 7 for r in shared)
    with pytest.raises(ValueError, match="random_range_ratio"):
        datasets.random_requests(1, 10, 10, 1.5, VOCAB)
