"""Where the host time of the three-service path goes: py-spy on each service under load.

Starts the services with a tiny dummy Llama (the model costs almost nothing, so host overhead
dominates), drives ``--streams`` concurrent streams through ``bench_serving.py`` (HTTP or gRPC),
records each service process with py-spy for ``--seconds``, and prints each service's heaviest
functions (self and inclusive share of samples). Collapsed stacks are kept in ``--out`` (open
them with speedscope or flamegraph.pl). Needs ``pip install py-spy`` and ptrace rights (root).

    python bench/profile_serving.py --streams 128 --seconds 20 --out /tmp/prof
"""

from __future__ import annotations

import argparse
import collections
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services"), str(ROOT / "kernels")]  # the source roots

from bench.serving.launch import start_services  # noqa: E402

logger = logging.getLogger("profile_serving")
NAMES = ("worker", "scheduler", "tokenizer")


def load(args: argparse.Namespace, base_url: str, grpc_address: str) -> subprocess.Popen:
    """Enough streams for the whole recording, ``--streams`` at a time."""
    endpoint = ["--base-url", base_url] if args.backend == "openai" else []
    endpoint += ["--grpc-address", grpc_address, "--backend", args.backend]
    cmd = [
        sys.executable,
        str(ROOT / "bench/bench_serving.py"),
        *endpoint,
        "--vocab-size",
        str(args.vocab_size),
    ]
    cmd += ["--dataset", "fixed", "--num-prompts", str(args.streams * args.waves)]
    cmd += ["--input-len", str(args.input_len)]
    cmd += ["--output-len", str(args.output_len), "--max-concurrency", str(args.streams)]
    cmd += ["--disable-tqdm", "--output-file", str(args.out / "load.json")]
    return subprocess.Popen(cmd)


def record(pids: dict[str, int], seconds: int, out: Path, rate: int) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    procs = [
        subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate)]
            + ["--format", "raw", "--nonblocking", "--output", str(out / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    for p in procs:
        p.wait()


def summarize(path: Path, top: int) -> str:
    """Self and inclusive sample shares of the heaviest functions in one collapsed-stack file."""
    selfs: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [f.split(" (")[0] + " (" + _short(f) + ")" for f in stack.split(";") if f]
        total += n
        if frames:
            selfs[frames[-1]] += n
        # Inclusive per function, not per line, and once per stack (recursion).
        for f in {f.rsplit(":", 1)[0] + ")" for f in frames}:
            incl[f] += n
    lines = [f"{path.stem}: {total} samples"]
    lines += [f"  self {n / total:6.1%}  {f}" for f, n in selfs.most_common(top)]
    lines += [f"  incl {n / total:6.1%}  {f}" for f, n in incl.most_common(top * 3)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    where = frame.split(" (", 1)[1].rstrip(")") if " (" in frame else ""
    for marker in ("site-packages/", "/speed/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return where


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--config",
        default=str(ROOT / "bench/configs/tiny-llama.json"),
        help="a config.json for dummy weights; '' with --load-format auto: the embedded SmolLM2",
    )
    p.add_argument("--load-format", default="dummy")
    p.add_argument("--vocab-size", type=int, default=512, help="prompt ids below this")
    p.add_argument("--backend", choices=("openai", "grpc"), default="openai")
    p.add_argument("--streams", type=int, default=128)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--input-len", type=int, default=16)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--waves", type=int, default=3, help="requests = waves * streams")
    p.add_argument("--warm-seconds", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--out", type=Path, default=Path("/tmp/radixserve-profile"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    model = (["--model", args.config] if args.config else []) + ["--load-format", args.load_format]
    services = start_services(model, ["--max-rows", str(max(args.streams, 16) + 8)])
    driver = None
    try:
        driver = load(args, services.base_url, services.grpc_address)
        time.sleep(args.warm_seconds)
        pids = {name: proc.pid for name, proc in zip(NAMES, services.procs, strict=True)}
        record(pids, args.seconds, args.out, args.rate)
        driver.wait(300)  # its summary (load.json) gives the throughput while recorded
    finally:
        if driver is not None and driver.poll() is None:
            driver.terminate()
            driver.wait(30)
        services.stop()
    for name in NAMES:
        print(summarize(args.out / f"{name}.txt", args.top), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
