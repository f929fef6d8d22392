"""``python -m radixserve.worker``: load the model, serve WorkerService until a signal."""

from __future__ import annotations

import os

# NOTE: before torch is imported. Spinning OpenMP threads starve the event loop and the gRPC
# threads on a small CPU machine (10-20x slower steps under load); passive waiting does not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from radixserve.common.server import run_service
from radixserve.worker.config import WorkerConfig
from radixserve.worker.server import start_worker


def main() -> None:
    run_service("worker", WorkerConfig, start_worker)


if __name__ == "__main__":
    main()
