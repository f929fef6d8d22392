"""``python -m radixserve.services.scheduler``: wait for the worker, serve SchedulerService."""

from __future__ import annotations

from radixserve.services.common.server import run_service
from radixserve.services.scheduler.config import SchedulerConfig
from radixserve.services.scheduler.server import start_scheduler


def main() -> None:
    run_service("scheduler", SchedulerConfig, start_scheduler)


if __name__ == "__main__":
    main()
