"""``python -m services.scheduler``: wait for the worker, serve SchedulerService."""

from __future__ import annotations

from services.common.server import run_service
from services.scheduler.config import SchedulerConfig
from services.scheduler.server import start_scheduler


def main() -> None:
    run_service("scheduler", SchedulerConfig, start_scheduler)


if __name__ == "__main__":
    main()
