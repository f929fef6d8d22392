"""Nsight Compute over the serving window, one run per kernel group, summarised as a table:
SM throughput, memory (and DRAM) throughput, tensor-pipe activity and the top warp stall reason
per kernel — the columns of KERNEL_GUIDE.md's Part 6 hardware-behaviour table.

Each run is ``ncu --profile-from-start off --kernel-name regex:<group> --launch-count N`` over
``profile.py workload`` (only the window between cudaProfilerStart/Stop is profiled), exported to
``<out>/<group>.ncu-rep`` and read back with ``ncu --import ... --csv --page raw``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

GROUPS = {
    # Our Triton attention kernels (decode stage 1/2, extend), and any flash/SDPA fallback.
    "attention": r"regex:.*(decode_stage|extend_kernel|attn|attention|flash|fmha).*",
    # cuBLAS / CUTLASS matmuls (Hopper cuBLAS names its kernels nvjet_*).
    "gemm": r"regex:.*(gemm|cutlass|nvjet|xmma|cublas|s16816|s1688).*",
    # RMSNorm (fused add), RoPE, SiLU-and-mul, KV store, and torch's elementwise/reduce kernels.
    "norm_elementwise": r"regex:.*(rms_norm|norm|rope|silu|store_kv|elementwise|reduce).*",
}
SECTIONS = ["SpeedOfLight", "ComputeWorkloadAnalysis", "MemoryWorkloadAnalysis", "WarpStateStats"]
SM = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
MEM = "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"
DRAM = (
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",
)  # names differ by ncu version
TIME = "gpu__time_duration.sum"
TO_US = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}  # ncu picks the unit
TENSOR = re.compile(r"sm__pipe_tensor\w*cycles_active\.avg\.pct_of_peak_sustained_active")
STALL = re.compile(r"smsp__average_warps?_issue_stalled_(\w+)_per_issue_active\.ratio")
NOT_STALLS = {"selected", "not_selected"}  # issuing, or eligible but another warp issued


def _num(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return float("nan")


def parse_raw_csv(text: str) -> list[dict]:
    """One row per kernel name from ``ncu --csv --page raw`` (rows averaged per name)."""
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]  # drop ncu's ==PROF== lines
    table_rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    units, rows = (table_rows[0], table_rows[1:]) if table_rows else ({}, [])  # row 0: units
    time_scale = TO_US.get(units.get(TIME, "nsecond"), float("nan"))
    by_name: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_name[row["Kernel Name"]].append(row)
    out = []
    for name, group in by_name.items():

        def mean(col: str, group: list[dict] = group) -> float:
            vals = [_num(r[col]) for r in group if col in r and r[col] not in ("", "n/a")]
            return sum(vals) / len(vals) if vals else float("nan")

        cols = group[0].keys()
        tensor = [mean(c) for c in cols if TENSOR.fullmatch(c)]
        stalls = {m.group(1): mean(c) for c in cols if (m := STALL.fullmatch(c))}
        stalls = {k: v for k, v in stalls.items() if k not in NOT_STALLS and v == v}
        top = max(stalls, key=stalls.__getitem__) if stalls else "n/a"
        out.append({
            "kernel": name,
            "launches": len(group),
            "time_us": mean(TIME) * time_scale,
            "sm_pct": mean(SM),
            "memory_pct": mean(MEM),
            "dram_pct": next((v for v in map(mean, DRAM) if v == v), float("nan")),
            "tensor_pct": max(tensor) if tensor else float("nan"),
            "top_stall": top,
        })  # fmt: skip
    return sorted(out, key=lambda r: -r["time_us"] * r["launches"])


def table(groups: dict[str, list[dict]]) -> str:
    lines = [
        "| group | kernel | launches | time (us) | SM % | memory % | DRAM % | tensor % "
        "| top stall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group, rows in groups.items():
        for r in rows:
            lines.append(
                f"| {group} | `{r['kernel'][:60]}` | {r['launches']} | {r['time_us']:.1f} | "
                f"{r['sm_pct']:.0f} | {r['memory_pct']:.0f} | {r['dram_pct']:.0f} | "
                f"{r['tensor_pct']:.0f} | {r['top_stall']} |"
            )
    return "\n".join(lines) + "\n"


def _triton_env() -> dict[str, str]:
    """Under ncu, Triton's own ``ldconfig -p`` (to find libcuda) aborts: name the folder for it."""
    env = dict(os.environ)
    if "TRITON_LIBCUDA_PATH" not in env:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        hit = next((ln.split()[-1] for ln in out.splitlines() if "libcuda.so.1" in ln), None)
        if hit:
            env["TRITON_LIBCUDA_PATH"] = os.path.dirname(hit)
    return env


def profile_groups(args: argparse.Namespace) -> None:
    ncu = shutil.which("ncu")
    if ncu is None:
        raise SystemExit("ncu not found: install Nsight Compute (CUDA toolkit) on the GPU machine")
    script = Path(__file__).with_name("profile.py")
    workload = [sys.executable, str(script), "workload", "--config", args.config]
    workload += ["--concurrency", str(args.concurrency), "--output-len", str(args.output_len)]
    results = {}
    for group, regex in GROUPS.items():
        rep = args.out / f"{group}.ncu-rep"
        cmd = [ncu, "--profile-from-start", "off", "--kernel-name", regex, "--launch-count"]
        cmd += [str(args.launch_count), "-f", "-o", str(rep.with_suffix(""))]
        for section in SECTIONS:
            cmd += ["--section", section]
        print(f"ncu {group}: {' '.join(cmd[1:8])} ...", flush=True)
        subprocess.run(cmd + workload, check=True, env=_triton_env())
        raw = subprocess.run(
            [ncu, "--import", str(rep), "--csv", "--page", "raw"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        results[group] = parse_raw_csv(raw)
    (args.out / "radixserve_kernels.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    (args.out / "radixserve_kernels.md").write_text(text)
    print(text)
