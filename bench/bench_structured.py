"""Structured output cost: decode throughput with the grammar machinery off, on, and in use.

Four runs on one runner and the same requests (dummy weights, greedy, ignore_eos), in one process:

  off          the runner's grammar/bias hook removed (the code path before structured output)
  on           the hook in place, no request constrained (must be within 2 % of ``off``)
  json_schema  every request constrained by a JSON schema, masks filled ahead on the mask thread
               (``grammar_overlap``, the default; target: >= 0.9x ``on`` at batch 64)
  json_inline  the same with the overlap off: matchers advance and masks fill between steps

For the two constrained runs it also prints the host time on grammar masks per step: ``work``
(advancing the matchers and filling the masks, on any thread) and ``exposed`` (the part the step
thread spent or waited for, between the forwards). A JSON row ends once its object is complete
(ignore_eos does not hold a finished grammar open), so its output may be shorter.

    python bench/bench_structured.py --config bench/configs/llama-3-8b.json --num-requests 64

On CPU, ``--config bench/configs/tiny-llama.json --num-requests 4 --output-len 8`` checks it runs;
``--config bench/configs/tiny-llama-128k.json`` (Llama-3's vocabulary on a tiny model) shows the
mask costs of a real vocabulary size.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services"), str(ROOT / "kernels")]  # the source roots

from bench.bench_engine import core_for, drive, gpu_name, offline_requests  # noqa: E402
from radixserve.common.types import Constraint, SamplingParams  # noqa: E402
from radixserve.worker.engine import ModelRunner, RunnerConfig  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "score": {"type": "number"},
    },
    "required": ["name", "tags", "score"],
}


class _Off:
    """Stands in for RowConstraints with nothing live: ``active`` is always 0."""

    active = 0

    def start(self, *args: object) -> None: ...
    def release(self, *args: object) -> None: ...
    def clear(self) -> None: ...


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=str(Path(__file__).parent / "configs/llama-3-8b.json"))
    p.add_argument("--backend", default=None)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--num-requests", type=int, default=64)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2, help="alternate off/on this many times")
    p.add_argument("--chunk", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.max_running = args.num_requests

    runner = ModelRunner(
        RunnerConfig(
            model=args.config,
            load_format="dummy",
            dtype=args.dtype,
            attention_backend=args.backend,
            max_rows=max(args.num_requests + 1, 8),
        )
    )
    info = runner.info
    print(f"{info.model_name} on {info.device} ({gpu_name()}), batch {args.num_requests}")
    plain = SamplingParams(temperature=0, max_new_tokens=args.output_len, ignore_eos=True)
    constrained = replace(plain, constraint=Constraint("json_schema", json.dumps(SCHEMA)))
    hook = runner.constraints

    def run(name: str, sp: SamplingParams, on: bool, overlap: bool = True) -> dict:
        runner.constraints = hook if on else _Off()  # type: ignore[assignment]
        hook.masks.overlap = overlap
        before = replace(hook.stats)
        r = drive(
            runner, core_for(runner, True, args), offline_requests(args, info.vocab_size, name, sp)
        )
        hook.masks.wait()  # the last step's job counts in this run
        after, steps = hook.stats, max(r["steps"], 1)
        r["mask_work_ms"] = (after.work_seconds - before.work_seconds) * 1e3 / steps
        r["mask_exposed_ms"] = (after.exposed_seconds - before.exposed_seconds) * 1e3 / steps
        masks = ""
        if sp.constraint is not None:
            masks = (
                f"; grammar masks per step: work {r['mask_work_ms']:.3f} ms,"
                f" exposed {r['mask_exposed_ms']:.3f} ms"
            )
        print(
            f"  {name}: {r['output_tok_per_s']:.0f} output tok/s ({r['seconds']:.2f}s, "
            f"{r['output_tokens']} tokens){masks}"
        )
        return r

    run("warm", constrained, True)  # kernels, the grammar compile and tokenizer load
    arms = ("off", "on", "json_schema", "json_inline")
    runs: dict[str, list[dict]] = {k: [] for k in arms}
    for i in range(args.repeats):
        runs["off"].append(run(f"off{i}", plain, False))
        runs["on"].append(run(f"on{i}", plain, True))
        runs["json_schema"].append(run(f"json{i}", constrained, True))
        runs["json_inline"].append(run(f"inline{i}", constrained, True, overlap=False))
    best = {k: max(r["output_tok_per_s"] for r in v) for k, v in runs.items()}
    result = {
        "gpu": gpu_name(),
        "args": vars(args),
        "runs": runs,
        "on_vs_off": best["on"] / best["off"],
        "json_vs_on": best["json_schema"] / best["on"],
        "json_inline_vs_on": best["json_inline"] / best["on"],
    }
    print(
        f"machinery on / off: {result['on_vs_off']:.3f} (target >= 0.98); "
        f"json_schema / unconstrained: {result['json_vs_on']:.3f} (target >= 0.9); "
        f"overlap off: {result['json_inline_vs_on']:.3f}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
