"""``python -m services.worker``: load the model, serve WorkerService until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import os
import sys

# NOTE: before torch is imported. Spinning OpenMP threads starve the event loop and the gRPC
# threads on a small CPU machine (10-20x slower steps under load); passive waiting does not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from services.common.config import parse_config
from services.common.logs import setup_logging
from services.common.server import install_stop_signals
from services.worker.config import WorkerConfig
from services.worker.server import start_worker


async def amain(argv: list[str]) -> None:
    cfg = parse_config(WorkerConfig, argv, prog="python -m services.worker")
    stop = asyncio.Event()
    install_stop_signals(stop)
    server = await start_worker(cfg)
    await stop.wait()
    await server.stop()


def main() -> None:
    setup_logging("worker")
    asyncio.run(amain(sys.argv[1:]))


if __name__ == "__main__":
    main()
