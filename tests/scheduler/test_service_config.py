"""SchedulerConfig embeds the core's config: every core field is a flag and a RADIXSERVE_*
variable, and a bad value fails when the config is built, before anything connects."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radixserve.common.config import add_config_arguments, parse_config
from radixserve.scheduler.config import SchedulerConfig, scheduler_config
from radixserve.scheduler.core_config import SchedulerCoreConfig
from tests.stack import free_port


def test_every_core_field_is_a_flag_and_an_env_variable(monkeypatch):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, SchedulerConfig)
    flags = {a.dest for a in parser._actions}
    assert {f.name for f in dataclasses.fields(SchedulerCoreConfig)} <= flags
    assert "core" not in flags
    cfg = parse_config(SchedulerConfig, ["--schedule-policy", "lpm", "--lpm-max-queue", "7"])
    assert cfg.core.schedule_policy == "lpm" and cfg.core.lpm_max_queue == 7
    monkeypatch.setenv("RADIXSERVE_CLIP_MAX_NEW_TOKENS", "99")
    monkeypatch.setenv("RADIXSERVE_STEP_TIMEOUT_SECONDS", "12.5")
    cfg = parse_config(SchedulerConfig, ["--page-size", "4"])
    assert cfg.core.clip_max_new_tokens == 99 and cfg.core.page_size == 4
    assert cfg.step_timeout_seconds == 12.5


def test_flat_keywords_split_into_service_and_core():
    cfg = scheduler_config(port=1, disable_radix_cache=True, max_running_requests=3)
    assert cfg.port == 1 and cfg.core == SchedulerCoreConfig(
        disable_radix_cache=True, max_running_requests=3
    )
    with pytest.raises(TypeError, match="no_such_field"):
        scheduler_config(no_such_field=1)


def test_bad_values_name_the_field_and_the_known_policies(monkeypatch):
    with pytest.raises(ValueError, match="schedule_policy: unknown 'sjf'; known: fcfs, lpm"):
        parse_config(SchedulerConfig, ["--schedule-policy", "sjf"])
    monkeypatch.setenv("RADIXSERVE_EVICTION_POLICY", "mru")
    with pytest.raises(ValueError, match="eviction_policy: unknown 'mru'; known: lfu, lru"):
        parse_config(SchedulerConfig, [])
    with pytest.raises(ValueError, match="step_timeout_seconds"):
        scheduler_config(step_timeout_seconds=0)


@pytest.mark.timeout(60)
def test_mistyped_policy_fails_at_start_before_connecting():
    """The worker address answers nothing: the service must not wait for it (900 s) first."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "radixserve.scheduler", "--schedule-policy", "sjf"]
        + ["--port", "0", "--metrics-port", "0", "--worker-address", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode != 0
    assert "schedule_policy: unknown 'sjf'; known: fcfs, lpm, priority" in proc.stderr
    assert time.monotonic() - start < 30
