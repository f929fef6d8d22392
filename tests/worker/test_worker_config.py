"""The worker config: embeds the runner config, every setting by flag and env, checked at start."""

from __future__ import annotations

import dataclasses

import pytest

from radixserve.common.config import env_name, parse_config
from radixserve.worker.config import WorkerConfig
from radixserve.worker.runner_config import RunnerConfig


def test_every_runner_setting_is_a_worker_flag_and_env(monkeypatch):
    runner_fields = [f.name for f in dataclasses.fields(RunnerConfig)]
    assert set(runner_fields) <= {f.name for f in dataclasses.fields(WorkerConfig)}
    monkeypatch.setenv(env_name("mem_fraction_static"), "0.5")
    monkeypatch.setenv(env_name("ops"), "torch")
    cfg = parse_config(WorkerConfig, ["--cuda-graph-max-bs", "8", "--num-slots", "64"])
    runner = cfg.runner
    assert type(runner) is RunnerConfig
    assert (runner.mem_fraction_static, runner.ops) == (0.5, "torch")
    assert (runner.cuda_graph_max_bs, runner.num_slots) == (8, 64)
    assert parse_config(WorkerConfig, ["--mem-fraction-static", "0.7"]).mem_fraction_static == 0.7
    assert runner.grammar_overlap  # on by default; off by flag or env
    assert not parse_config(WorkerConfig, ["--grammar-overlap", "false"]).grammar_overlap
    monkeypatch.setenv(env_name("grammar_overlap"), "false")
    assert not parse_config(WorkerConfig, []).runner.grammar_overlap
    assert all(getattr(runner, f) == getattr(cfg, f) for f in runner_fields)


def test_empty_or_zero_means_the_default(monkeypatch):
    monkeypatch.setenv(env_name("attention_backend"), "")
    cfg = parse_config(WorkerConfig, ["--num-slots", "0", "--max-context-len", ""])
    assert cfg.attention_backend is None and cfg.num_slots is None
    assert cfg.max_context_len is None and cfg.model is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"attention_backend": "flash"}, "unknown attention_backend 'flash'; known: torch, triton"),
        ({"ops": "cuda"}, "unknown ops 'cuda'; known: torch, triton"),
        ({"dtype": "fp8"}, "unknown dtype 'fp8'; known: auto, float32"),
        ({"load_format": "safetensors"}, "unknown load_format"),
        ({"device": "gpu"}, "device must be auto, cpu, cuda or cuda:N"),
        ({"num_slots": 1}, "num_slots must be >= 2"),
        ({"max_rows": 0}, "max_rows must be >= 1"),
        ({"max_context_len": -4}, "max_context_len must be >= 1"),
        ({"mem_fraction_static": 1.5}, "mem_fraction_static must be in"),
        ({"cuda_graph_max_bs": -1}, "cuda_graph_max_bs must be >= 0"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RunnerConfig(**kwargs)
    with pytest.raises(ValueError, match=message):
        WorkerConfig(**kwargs)


def test_bad_env_fails_before_serving(monkeypatch):
    monkeypatch.setenv(env_name("attention_backend"), "flash")
    with pytest.raises(ValueError, match="known: torch, triton"):
        parse_config(WorkerConfig, [])
    monkeypatch.delenv(env_name("attention_backend"))
    with pytest.raises(ValueError, match="port must be in"):
        parse_config(WorkerConfig, ["--port", "70000"])
