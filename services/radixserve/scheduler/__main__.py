"""``python -m radixserve.scheduler``: wait for the worker, serve SchedulerService."""

from __future__ import annotations

from radixserve.common.server import run_service
from radixserve.scheduler.config import SchedulerConfig
from radixserve.scheduler.server import start_scheduler


def main() -> None:
    run_service("scheduler", SchedulerConfig, start_scheduler)


if __name__ == "__main__":
    main()
