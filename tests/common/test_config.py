"""Config loading: flag > RADIXSERVE_* environment > dataclass default."""

from __future__ import annotations

import pytest

from radixserve.common.config import parse_config
from radixserve.scheduler.config import SchedulerConfig
from radixserve.worker.config import WorkerConfig


def test_defaults_are_the_design_ports():
    assert parse_config(WorkerConfig, []).port == 50053
    assert parse_config(SchedulerConfig, []).port == 50052


def test_env_then_flag(monkeypatch):
    monkeypatch.setenv("RADIXSERVE_MAX_ROWS", "64")
    monkeypatch.setenv("RADIXSERVE_ATTENTION_BACKEND", "torch")
    cfg = parse_config(WorkerConfig, [])
    assert cfg.max_rows == 64 and cfg.attention_backend == "torch"
    assert parse_config(WorkerConfig, ["--max-rows", "8"]).max_rows == 8


def test_bool_flag_and_env(monkeypatch):
    cfg = parse_config(SchedulerConfig, ["--disable-radix-cache"])
    assert cfg.core.disable_radix_cache is True
    monkeypatch.setenv("RADIXSERVE_DISABLE_RADIX_CACHE", "yes")
    assert parse_config(SchedulerConfig, []).core.disable_radix_cache is True
    monkeypatch.setenv("RADIXSERVE_DISABLE_RADIX_CACHE", "maybe")
    with pytest.raises(ValueError, match="RADIXSERVE_DISABLE_RADIX_CACHE"):
        parse_config(SchedulerConfig, [])
