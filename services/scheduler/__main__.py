"""``python -m services.scheduler``: wait for the worker, serve SchedulerService."""

from __future__ import annotations

import asyncio
import sys

from services.common.config import parse_config
from services.common.logs import setup_logging
from services.common.server import install_stop_signals
from services.scheduler.config import SchedulerConfig
from services.scheduler.server import start_scheduler


async def amain(argv: list[str]) -> None:
    cfg = parse_config(SchedulerConfig, argv, prog="python -m services.scheduler")
    stop = asyncio.Event()
    install_stop_signals(stop)
    running = await start_scheduler(cfg)
    await stop.wait()
    await running.stop()


def main() -> None:
    setup_logging("scheduler")
    asyncio.run(amain(sys.argv[1:]))


if __name__ == "__main__":
    main()
