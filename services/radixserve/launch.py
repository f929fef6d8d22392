"""``python -m radixserve.launch`` (``make run``): worker, scheduler and tokenizer here.

Each service runs in its own process with its peers' addresses as flags, exactly as it would run
alone. Ctrl-C (SIGINT) or SIGTERM stops all three in order: the tokenizer drains first
(``--drain-seconds``), then the scheduler and the worker stop; if one dies, the others stop too.
NOTE: the order keeps their own drains short: once the front door is gone its Connect stream is
closed (the scheduler aborts what it held, so it has nothing left to drain), and once the
scheduler is gone the worker's step stream is closed (so the worker leaves at once).
``--model``/``--load-format`` go to the worker and the tokenizer; extra flags after ``--`` go to
the worker alone (e.g. ``-- --num-slots 4096``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radixserve.common import security

SERVICES = ("worker", "scheduler", "tokenizer")


def _spawn(name: str, args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", f"radixserve.{name}", *args]
    # NOTE: a new process group each, so that Ctrl-C reaches them only through us, in order.
    return subprocess.Popen(cmd, start_new_session=True)


def _channel(address: str) -> grpc.Channel:
    """A plain channel, or TLS when the services get certificates (RADIXSERVE_TLS_* in the
    environment, which the children inherit)."""
    cfg = security.from_env()
    if not cfg.tls:
        return grpc.insecure_channel(address)
    ca = None
    if cfg.tls_ca:
        with open(cfg.tls_ca, "rb") as f:
            ca = f.read()
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))


def _ready(address: str) -> bool:
    with _channel(address) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="readiness"), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING


def _stop(procs: dict[str, subprocess.Popen], drain_seconds: float) -> None:
    """Stops the front door first (it drains: in-flight requests finish, new ones are refused),
    then the scheduler, then the worker, each after the one before it has exited."""
    for name in reversed(SERVICES):
        proc = procs.get(name)
        if proc is None or proc.poll() is not None:
            continue
        proc.send_signal(signal.SIGTERM)
        grace = drain_seconds + 10 if name == "tokenizer" else 15
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"radixserve: {name} did not stop in {grace:.0f}s; killing it", flush=True)
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radixserve.launch", description=__doc__)
    parser.add_argument("--model", default=os.environ.get("RADIXSERVE_MODEL", ""))
    parser.add_argument(
        "--load-format", default=os.environ.get("RADIXSERVE_LOAD_FORMAT", "auto"),
        help="auto, gguf, hf or dummy (random weights of the config at --model)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="where the front door listens")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=float(os.environ.get("RADIXSERVE_DRAIN_SECONDS", "30")),
        help="on Ctrl-C/SIGTERM, how long in-flight requests may finish",
    )
    parser.add_argument("worker_args", nargs="*", help="extra worker flags (after --)")
    ns = parser.parse_args(argv)
    model = (["--model", ns.model] if ns.model else []) + ["--load-format", ns.load_format]
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    procs["worker"] = _spawn("worker", ["--host", "127.0.0.1", *model, *ns.worker_args])
    procs["scheduler"] = _spawn("scheduler", ["--host", "127.0.0.1"])
    procs["tokenizer"] = _spawn(
        "tokenizer", ["--host", ns.host, "--drain-seconds", str(ns.drain_seconds), *model]
    )
    print("radixserve: starting worker, scheduler and tokenizer (loading the model)...", flush=True)
    announced = False
    try:
        while not stopping:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead:
                print(f"radixserve: {', '.join(dead)} exited; stopping the others", flush=True)
                return 1
            if not announced and _ready("127.0.0.1:50051"):
                announced = True
                _announce(ns.host)
            time.sleep(0.5)
        return 0
    finally:
        print("radixserve: stopping (draining the front door first)...", flush=True)
        _stop(procs, ns.drain_seconds)
        print("radixserve: stopped", flush=True)


def _announce(host: str) -> None:
    print(
        "\nradixserve is ready:\n"
        f"  OpenAI HTTP API   http://{host}:8000/v1   (e.g. curl http://{host}:8000/v1/models)\n"
        f"  gRPC front door   {host}:50051            (radixserve 'Hello')\n"
        "  scheduler gRPC    127.0.0.1:50052   worker gRPC 127.0.0.1:50053\n"
        "  metrics           :9101/metrics (tokenizer), :9102 (scheduler), :9103 (worker)\n"
        "Press Ctrl-C to stop.\n",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
