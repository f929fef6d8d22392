"""Summary of a run: throughput and TTFT / ITL / TPOT / E2E distributions (milliseconds)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from .backends import RequestResult

logger = logging.getLogger(__name__)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), ``q`` in [0, 100]; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def distribution(seconds: Sequence[float]) -> dict[str, float]:
    """mean, p50, p99 (and max) in milliseconds."""
    ms = [s * 1e3 for s in seconds]
    mean = sum(ms) / len(ms) if ms else math.nan
    return {
        "mean_ms": mean,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


def summarize(results: list[RequestResult], duration: float) -> dict[str, Any]:
    """Run-wide figures; failed requests count only in ``failed``."""
    ok = [r for r in results if not r.error]
    inputs = sum(r.input_len for r in ok)
    outputs = sum(r.output_len for r in ok)
    return {
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "errors": sorted({r.error for r in results if r.error})[:5],
        "duration_s": duration,
        "total_input_tokens": inputs,
        "total_output_tokens": outputs,
        "request_throughput": len(ok) / duration,
        "output_throughput": outputs / duration,
        "total_token_throughput": (inputs + outputs) / duration,
        "ttft": distribution([r.ttft for r in ok]),
        "itl": distribution([gap for r in ok for gap in r.itl]),
        "tpot": distribution([t for r in ok if (t := r.tpot) is not None]),
        "e2e": distribution([r.e2e for r in ok]),
    }


def report(summary: dict[str, Any]) -> str:
    """Human-readable table of ``summarize``'s output."""
    lines = [
        f"{'completed / failed':<28}{summary['completed']} / {summary['failed']}",
        f"{'duration (s)':<28}{summary['duration_s']:.2f}",
        f"{'input / output tokens':<28}"
        f"{summary['total_input_tokens']} / {summary['total_output_tokens']}",
        f"{'request throughput (req/s)':<28}{summary['request_throughput']:.2f}",
        f"{'output throughput (tok/s)':<28}{summary['output_throughput']:.1f}",
        f"{'total throughput (tok/s)':<28}{summary['total_token_throughput']:.1f}",
        f"{'(ms)':<12}{'mean':>10}{'p50':>10}{'p99':>10}",
    ]
    for key in ("ttft", "itl", "tpot", "e2e"):
        d = summary[key]
        lines.append(
            f"{key.upper():<12}{d['mean_ms']:>10.2f}{d['p50_ms']:>10.2f}{d['p99_ms']:>10.2f}"
        )
    for err in summary["errors"]:
        lines.append(f"error: {err}")
    return "\n".join(lines)
