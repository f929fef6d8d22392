"""What both front ends (gRPC and HTTP) share: tokenizer, model info, prompt builder, manager,
and the door's state (ready, draining) and the off-loop pool for large inputs."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from radixserve.common.errors import InvalidArgument
from radixserve.common.types import DEFAULT_MAX_NEW_TOKENS, ModelInfo
from radixserve.common.vocab.loading import Tokenizer
from radixserve.tokenizer.manager import RequestManager
from radixserve.tokenizer.prompts import PromptBuilder

T = TypeVar("T")
# Inputs above this many characters (or ids) are tokenized in a thread: a 50 MB prompt takes
# seconds, and on the event loop it would freeze every other stream for as long.
OFFLOAD_CHARS = 32 * 1024
# A generous bound on characters per token: a text longer than (context + 1) tokens of this many
# characters is first tokenized only that far, so a huge prompt is refused in ~a second instead
# of being tokenized whole (minutes for 50 MB) only to be found too long.
MAX_CHARS_PER_TOKEN = 32


@dataclass
class Frontend:
    tokenizer: Tokenizer
    info: ModelInfo
    builder: PromptBuilder
    manager: RequestManager
    model_name: str
    default_max_tokens: int = DEFAULT_MAX_NEW_TOKENS
    upstream_ready: Callable[[], bool] = lambda: True  # some scheduler takes requests
    executor: concurrent.futures.Executor | None = field(default=None, repr=False)

    @property
    def ready(self) -> bool:
        """What readiness (gRPC health, HTTP /health) reports."""
        return not self.manager.draining and self.upstream_ready()

    def ids_from_text(self, text: str, field_name: str = "prompt") -> list[int]:
        """The builder's ``ids_from_text``, refusing a text far over the context early."""
        self._check_length(text, field_name)
        return self.builder.ids_from_text(text, field_name)

    async def tokenize(self, text: str, add_special_tokens: bool, field_name: str) -> list[int]:
        """``/tokenize`` and gRPC ``Tokenize``: the same bound as a prompt (a text far over the
        context is refused after tokenizing only its head), off the event loop when large."""
        return await self.offload(len(text), self._encode, text, add_special_tokens, field_name)

    def _encode(self, text: str, add_special_tokens: bool, field_name: str) -> list[int]:
        self._check_length(text, field_name)
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)

    def _check_length(self, text: str, field_name: str) -> None:
        ctx = self.info.max_context_len
        cap = (ctx + 2) * MAX_CHARS_PER_TOKEN
        if isinstance(text, str) and len(text) > cap:
            head = self.tokenizer.encode(text[:cap], add_special_tokens=True)
            if len(head) > ctx + 1:  # NOTE: +1: the cut may split one token in two
                raise InvalidArgument(
                    f"{len(text)} characters, more than the context ({ctx} tokens) holds",
                    field_name,
                )

    async def offload(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, in a worker thread when ``size`` (characters or ids) is large."""
        if size < OFFLOAD_CHARS:
            return fn(*args)
        if self.executor is None:
            # NOTE: two threads: a third large input waits its turn instead of starving the loop
            # of the GIL (tokenizers that release it run in parallel anyway).
            self.executor = concurrent.futures.ThreadPoolExecutor(2, "tokenize")
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
