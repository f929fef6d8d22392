"""bench/profile/ncu.py reads ncu's raw CSV into the hardware-behaviour table (no GPU needed)."""

from __future__ import annotations

import math

from bench.profile.ncu import GROUPS, parse_raw_csv, table

HEADER = (
    '"ID","Kernel Name","gpu__time_duration.sum",'
    '"sm__throughput.avg.pct_of_peak_sustained_elapsed",'
    '"gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",'
    '"dram__throughput.avg.pct_of_peak_sustained_elapsed",'
    '"sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",'
    '"smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",'
    '"smsp__average_warps_issue_stalled_selected_per_issue_active.ratio",'
    '"smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio"'
)
UNITS = '"","","nsecond","%","%","%","%","ratio","ratio","ratio"'
RAW = "\n".join([
    "==PROF== Connected to process 1",
    HEADER,
    UNITS,
    '"0","_decode_stage1_kernel","10,000","20","80","78","0","3.5","9.0","0.2"',
    '"1","_decode_stage1_kernel","12,000","22","84","82","0","4.5","9.0","0.2"',
    '"2","nvjet_hsh_128x256","50,000","85","40","35","70","0.5","1.0","2.0"',
])  # fmt: skip


def test_parse_raw_csv_averages_per_kernel_and_picks_top_stall():
    rows = {r["kernel"]: r for r in parse_raw_csv(RAW)}
    dec, gemm = rows["_decode_stage1_kernel"], rows["nvjet_hsh_128x256"]
    assert dec["launches"] == 2 and math.isclose(dec["time_us"], 11.0)
    assert math.isclose(dec["memory_pct"], 82.0) and math.isclose(dec["sm_pct"], 21.0)
    assert dec["top_stall"] == "long_scoreboard"  # "selected" is issuing, not a stall
    assert gemm["top_stall"] == "math_pipe_throttle" and gemm["tensor_pct"] == 70.0
    assert list(rows) == ["nvjet_hsh_128x256", "_decode_stage1_kernel"]  # by total time


def test_time_follows_the_unit_row_and_dram_has_a_second_name():
    raw = RAW.replace('"","","nsecond"', '"","","usecond"').replace(
        '"dram__throughput', '"gpu__dram_throughput'
    )
    dec = {r["kernel"]: r for r in parse_raw_csv(raw)}["_decode_stage1_kernel"]
    assert math.isclose(dec["time_us"], 11000.0) and math.isclose(dec["dram_pct"], 80.0)


def test_table_and_groups():
    text = table({"attention": parse_raw_csv(RAW)[1:], "gemm": parse_raw_csv(RAW)[:1]})
    assert "| attention | `_decode_stage1_kernel` | 2 | 11.0 | 21 | 82 | 80 | 0 |" in text
    assert set(GROUPS) == {"attention", "gemm", "norm_elementwise"}
