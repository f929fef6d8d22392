"""Issue 10, finding 7: ``make run``'s launcher stops the front door first and waits for its
drain before it stops the scheduler, then the worker (real processes that log their signal)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from radixserve.launch import _stop

# Each stand-in records when SIGTERM arrived, takes ``delay`` seconds to stop (a drain), then
# records that it exited.
CHILD = """
import signal, sys, time
name, delay, log = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def on_term(*_):
    with open(log, "a") as f:
        f.write(f"{name} term {time.monotonic()}\\n")
    time.sleep(delay)
    with open(log, "a") as f:
        f.write(f"{name} exit {time.monotonic()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
with open(log, "a") as f:
    f.write(f"{name} ready 0\\n")
while True:
    time.sleep(0.05)
"""


def test_stop_order_is_tokenizer_then_scheduler_then_worker(tmp_path: Path):
    log = tmp_path / "signals.log"
    delays = {"worker": 0.1, "scheduler": 0.1, "tokenizer": 1.0}
    procs = {
        name: subprocess.Popen([sys.executable, "-c", CHILD, name, str(d), str(log)])
        for name, d in delays.items()
    }
    deadline = time.monotonic() + 30
    while _lines(log).count("ready") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # every child has installed its handler
    _stop(procs, drain_seconds=5)
    events = [ln.split()[:2] for ln in log.read_text().splitlines() if " ready " not in ln]
    assert events == [
        ["tokenizer", "term"], ["tokenizer", "exit"],
        ["scheduler", "term"], ["scheduler", "exit"],
        ["worker", "term"], ["worker", "exit"],
    ]  # fmt: skip
    assert all(p.returncode == 0 for p in procs.values())


def _lines(log: Path) -> list[str]:
    """The second word of each line so far (``ready``, ``term``, ``exit``)."""
    if not log.exists():
        return []
    return [ln.split()[1] for ln in log.read_text().splitlines() if len(ln.split()) > 1]
