"""asyncio helpers with no transport in them (the scheduler core uses them too)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_while(busy: Callable[[], object], seconds: float, every: float = 0.02) -> bool:
    """Polls ``busy()`` every ``every`` seconds for up to ``seconds``; returns whether it cleared
    (the drains wait for their work like this)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while busy() and loop.time() < deadline:
        await asyncio.sleep(every)
    return not busy()
