"""What both front ends (gRPC and HTTP) share: tokenizer, model info, prompt builder, manager,
and the door's state (ready, draining) and the off-loop pool for large inputs."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.common.errors import Unavailable
from services.common.types import ModelInfo
from services.tokenizer.manager import RequestManager
from services.tokenizer.prompts import PromptBuilder
from services.tokenizer.tokenization import Tokenizer

T = TypeVar("T")
# Inputs above this many characters (or ids) are tokenized in a thread: a 50 MB prompt takes
# seconds, and on the event loop it would freeze every other stream for as long.
OFFLOAD_CHARS = 32 * 1024


@dataclass
class Frontend:
    tokenizer: Tokenizer
    info: ModelInfo
    builder: PromptBuilder
    manager: RequestManager
    model_name: str
    default_max_tokens: int = 128
    upstream_ready: Callable[[], bool] = lambda: True  # some scheduler takes requests
    executor: concurrent.futures.Executor | None = field(default=None, repr=False)

    @property
    def ready(self) -> bool:
        """What readiness (gRPC health, HTTP /health) reports."""
        return not self.manager.draining and self.upstream_ready()

    def check_accepting(self) -> None:
        """Raises Unavailable while draining, before any work is spent on the request."""
        if self.manager.draining:
            raise Unavailable("the server is shutting down")

    async def offload(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, in a worker thread when ``size`` (characters or ids) is large."""
        if size < OFFLOAD_CHARS:
            return fn(*args)
        if self.executor is None:
            # NOTE: two threads: a third large input waits its turn instead of starving the loop
            # of the GIL (tokenizers that release it run in parallel anyway).
            self.executor = concurrent.futures.ThreadPoolExecutor(2, "tokenize")
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
