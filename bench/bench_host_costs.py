"""Per-token and per-step host costs of each hop of the three-service path (pure CPU).

Times, in microseconds, the Python work each service does for every token or step, with no
model and no network: the conversions and framing a profile of the running services
(``bench/profile_serving.py``) points at. Compare before/after an optimization on one machine.

    python bench/bench_host_costs.py --batch 128
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services"), str(ROOT / "kernels")]  # the source roots

from radixserve.common.outputs import Outputs  # noqa: E402
from radixserve.common.outputs import RequestOutput as TokenEvent  # noqa: E402
from radixserve.common.types import ForwardMode, ReqInput, StepInput  # noqa: E402
from radixserve.common.vocab.char_vocab import CharTokenizer  # noqa: E402
from radixserve.common.wire import worker as worker_wire  # noqa: E402
from radixserve.common.wire.scheduler import output_from_pb as _output_from_pb  # noqa: E402
from radixserve.common.wire.scheduler import output_to_pb as _event_output  # noqa: E402
from radixserve.common.wire.scheduler import outputs_from_pb, outputs_to_pb  # noqa: E402
from radixserve.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402
from radixserve.tokenizer.manager import Chunk  # noqa: E402
from radixserve.tokenizer.openai.render import Format  # noqa: E402
from radixserve.tokenizer.openai.sse import event as _event  # noqa: E402
from radixserve.tokenizer.server import _response  # noqa: E402
from radixserve.v1 import scheduler_pb2  # noqa: E402

logger = logging.getLogger("bench_host_costs")


def per_call_us(fn: Callable[[], object], min_seconds: float = 0.3) -> float:
    """Best of 3 timed loops (the least disturbed by other processes), microseconds per call."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - start > min_seconds / 10:
            break
        n *= 4
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def measure(batch: int) -> dict[str, float]:
    decode = StepInput(
        7, ForwardMode.DECODE, [ReqInput(row=i, new_slots=[1000 + i]) for i in range(batch)]
    )
    step_pb = worker_wire.step_to_pb(decode)
    events = [TokenEvent(f"{i}", [1234], None, None, 64, 10, 0) for i in range(batch)]
    outs = [_event_output(e) for e in events]
    # A decode step's news for one tokenizer: one RequestOutput per request (before the packed
    # form), and packed (now); both serialized by the scheduler and parsed by the tokenizer.
    per_request = scheduler_pb2.ConnectResponse(step_id=7, outputs=outs).SerializeToString()
    packed = outputs_to_pb(Outputs(7, events)).SerializeToString()
    parse = scheduler_pb2.ConnectResponse.FromString
    tok = CharTokenizer(128256)
    fmt = Format("m", tok, logprobs=False)
    chunk = Chunk(text="x", token_ids=[1234], prompt_tokens=64, completion_tokens=10)
    detok = IncrementalDetokenizer(tok, prompt_ids=[5, 6, 7])
    return {
        # scheduler, per step
        f"scheduler: step_to_pb, decode step of {batch}": per_call_us(
            lambda: worker_wire.step_to_pb(decode).SerializeToString()
        ),
        # worker, per step
        f"worker: step_from_pb, decode step of {batch}": per_call_us(
            lambda: worker_wire.step_from_pb(step_pb)
        ),
        # scheduler, per token (a decode step of `batch` requests for one tokenizer, / batch)
        "scheduler: step news, one RequestOutput each + serialize, per token": per_call_us(
            lambda: scheduler_pb2.ConnectResponse(
                step_id=7, outputs=[_event_output(e) for e in events]
            ).SerializeToString()
        )
        / batch,
        "scheduler: step news, packed (outputs_to_pb) + serialize, per token": per_call_us(
            lambda: outputs_to_pb(Outputs(7, events)).SerializeToString()
        )
        / batch,
        # tokenizer, per token
        "tokenizer: parse + one _output_from_pb each, per token": per_call_us(
            lambda: [_output_from_pb(o) for o in parse(per_request).outputs]
        )
        / batch,
        "tokenizer: parse + outputs_from_pb (packed), per token": per_call_us(
            lambda: outputs_from_pb(parse(packed))
        )
        / batch,
        "tokenizer: detokenize one token (char vocab)": per_call_us(lambda: detok.feed([1234])),
        "tokenizer: SSE event (fmt.chunk + json), per token": per_call_us(
            lambda: _event(fmt.chunk(chunk, True))  # type: ignore[arg-type]
        ),
        "tokenizer: SSE event (fmt.event, the template), per token": per_call_us(
            lambda: fmt.event(chunk, True)
        ),
        "tokenizer: gRPC GenerateResponse + serialize, per token": per_call_us(
            lambda: _response("rid-1", chunk).SerializeToString()
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    costs = measure(args.batch)
    for name, us in costs.items():
        print(f"{us:10.2f} us  {name}")
    if args.out:
        Path(args.out).write_text(json.dumps({"batch": args.batch, "us": costs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
