"""One in-process stack (embedded model) shared by the observability tests that need servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack, start_stack


@pytest.fixture(scope="session")
def obs_stack() -> Iterator[Stack]:
    running = start_stack(worker={"num_slots": 2048, "max_rows": 8})
    yield running
    running.stop()
