"""A/B of the three-service host path: an old tree against this one, alternating, in one run.

Each arm is a source tree (``--base`` an exported old commit with its stubs generated, and this
checkout) with its own environment; the services of one arm start once per round with a tiny
dummy Llama (the model costs next to nothing, so the host path is what is measured), then every
load of ``--loads`` (``backend:concurrency``) runs through ``bench_serving.py`` (the same client
for both arms). Rounds alternate the arms; the summary keeps each arm's best output tok/s per
load. CPU only; on a shared machine read the spread between rounds as the noise.

    python bench/ab_host_path.py --base /tmp/hp-base --new-env PYTHONPATH=/tmp/hp-extra \\
        --loads openai:64,openai:256,grpc:64,grpc:256 --rounds 2 --out /tmp/ab.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services"), str(ROOT / "kernels")]  # the source roots

from bench.serving import launch  # noqa: E402

logger = logging.getLogger("ab_host_path")
NAMES = ("worker", "scheduler", "tokenizer")  # the order start_services starts them in


def _env(pairs: list[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in pairs)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(services: launch.Services, backend: str, conc: int, args: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, str(ROOT / "bench/bench_serving.py"), "--backend", backend]
        cmd += ["--base-url", services.base_url, "--grpc-address", services.grpc_address]
        cmd += ["--vocab-size", "512", "--dataset", "fixed", "--disable-tqdm"]
        cmd += ["--num-prompts", str(conc * args.waves), "--max-concurrency", str(conc)]
        cmd += ["--input-len", str(args.input_len), "--output-len", str(args.output_len)]
        cmd += ["--output-file", out.name]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the same client
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return json.loads(Path(out.name).read_text())


def run_arm(name: str, root: Path, env: dict[str, str], args: argparse.Namespace) -> dict:
    launch.ROOT = root  # NOTE: start_services starts each service with cwd=ROOT (that tree's code)
    model = ["--model", str(ROOT / "bench/configs/tiny-llama.json"), "--load-format", "dummy"]
    env = {"PYTHONPATH": "", **env}  # only what the arm names
    services = launch.start_services(model, ["--max-rows", str(args.max_rows)], env)
    results = {}
    try:
        run_load(services, "openai", 16, argparse.Namespace(**{**vars(args), "waves": 1}))  # warm
        for load in args.loads.split(","):
            backend, conc = load.split(":")
            before = [cpu_seconds(p.pid) for p in services.procs]
            summary = run_load(services, backend, int(conc), args)
            used = [cpu_seconds(p.pid) - b for p, b in zip(services.procs, before, strict=True)]
            keep = ("output_throughput", "ttft", "itl", "completed", "failed", "duration_s")
            results[load] = {k: summary.get(k) for k in keep}
            # CPU time per output token of each service: what the host path costs, and far
            # less sensitive than tok/s to other work on a shared machine.
            tokens = max(summary.get("total_output_tokens", 0), 1)
            results[load]["cpu_us_per_token"] = {
                svc: round(u / tokens * 1e6, 2) for svc, u in zip(NAMES, used, strict=True)
            }
            logger.info(
                "%-8s %-11s %8.1f out tok/s  cpu us/token %s",
                name,
                load,
                summary.get("output_throughput", 0),
                results[load]["cpu_us_per_token"],
            )
    finally:
        services.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="old tree (stubs generated)")
    p.add_argument("--new", type=Path, default=ROOT, help="new tree (default: this checkout)")
    p.add_argument("--base-env", nargs="*", default=[], help="KEY=VALUE for the base services")
    p.add_argument("--new-env", nargs="*", default=[], help="KEY=VALUE for this tree's services")
    p.add_argument(
        "--also-new-without",
        action="store_true",
        help="a third arm: the new tree without --new-env (e.g. without httptools/uvloop)",
    )
    p.add_argument("--loads", default="openai:64,openai:256,grpc:64,grpc:256")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--waves", type=int, default=2, help="requests = waves * concurrency")
    p.add_argument("--input-len", type=int, default=16)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--max-rows", type=int, default=300)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    arms = {
        "base": (args.base.resolve(), _env(args.base_env)),
        "new": (args.new.resolve(), _env(args.new_env)),
    }
    if args.also_new_without:
        arms["new-bare"] = (args.new.resolve(), {})
    rounds: list[dict] = []
    for r in range(args.rounds):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for name in order:
            root, env = arms[name]
            rounds.append({"round": r, "arm": name, "results": run_arm(name, root, env, args)})
    best: dict[str, dict[str, float]] = {}
    cpu: dict[str, dict[str, dict[str, float]]] = {}  # load -> arm -> service -> least us/token
    for entry in rounds:
        for load, res in entry["results"].items():
            cur = best.setdefault(load, {})
            cur[entry["arm"]] = max(cur.get(entry["arm"], 0.0), res["output_throughput"] or 0.0)
            least = cpu.setdefault(load, {}).setdefault(entry["arm"], {})
            for svc, us in res["cpu_us_per_token"].items():
                least[svc] = min(least.get(svc, float("inf")), us)
    for load, by_arm in best.items():
        base = by_arm.get("base") or float("nan")
        line = f"{load:12s} base {base:8.1f}"
        for arm in [a for a in arms if a != "base"]:
            by_arm[f"{arm}_over_base"] = round(by_arm.get(arm, 0) / base, 3)
            line += f"  {arm} {by_arm.get(arm, 0):8.1f} x{by_arm[f'{arm}_over_base']:.2f}"
        print(line, flush=True)
        for arm, per_svc in cpu[load].items():
            print(f"{'':12s} {arm:8s} cpu us/token (least) {per_svc}", flush=True)
    if args.out:
        meta = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nproc": os.cpu_count()}
        meta["loadavg_end"] = os.getloadavg()
        meta["args"] = {k: str(v) for k, v in vars(args).items()}
        doc = {"meta": meta, "best": best, "cpu_us_per_token": cpu, "rounds": rounds}
        args.out.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
