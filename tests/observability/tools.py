"""The Prometheus binaries the observability tests run."""

from __future__ import annotations

import shutil

import pytest


def need(binary: str) -> str:
    """The path of ``binary``. Missing is a failure, never a skip: `make test` installs it."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: run `make prometheus` (apt-get install prometheus)")
    return path
