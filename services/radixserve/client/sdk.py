"""Python SDK for the public ``radixserve.v1.TokenizerService``: a sync and an asyncio client.

    with RadixClient("localhost:50051") as client:
        for chunk in client.generate("Once upon a time", max_tokens=32, temperature=0):
            print(chunk.text, end="")
        answer = client.chat([{"role": "user", "content": "Hi!"}], max_tokens=16)
        called = client.chat(messages, tools=[{"type": "function", "function": {...}}],
                             tool_choice="required")  # called.tool_calls[0].name, .args

Every call has a deadline (``timeout`` for generations, ``unary_timeout`` otherwise); unary calls
are retried on UNAVAILABLE by the channel's retry policy. Failures raise ``grpc.RpcError``
(``grpc.aio.AioRpcError`` for the async client) carrying the server's status and message.
Leaving a ``generate`` iterator early cancels the call, which aborts the request on the server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from radixserve.client.messages import (
    Completion,
    GenerateChunk,
    Message,
    generate_request,
)
from radixserve.common.types import ModelInfo
from radixserve.common.wire import common as wire
from radixserve.common.wire.tokenizer import OWNER_HEADER, owner_ticket
from radixserve.v1 import tokenizer_pb2, tokenizer_pb2_grpc

logger = logging.getLogger(__name__)

DEFAULT_ADDRESS = "localhost:50051"
_SERVICE = "radixserve.v1.TokenizerService"
_UNARY = ("Tokenize", "Detokenize", "GetModelInfo", "Abort")


def channel_options(retries: int = 4) -> list[tuple[str, Any]]:
    """Channel options with a retry policy (UNAVAILABLE, exponential backoff) on unary RPCs."""
    policy = {
        "maxAttempts": max(2, retries),
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    names = [{"service": _SERVICE, "method": m} for m in _UNARY]
    config = {"methodConfig": [{"name": names, "retryPolicy": policy}]}
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(config)),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]


@dataclass(frozen=True)
class ServedModel:
    """What ``model_info`` returns."""

    info: ModelInfo
    chat_template: str


def _served(resp: tokenizer_pb2.GetModelInfoResponse) -> ServedModel:
    return ServedModel(wire.model_info_from_pb(resp.info), resp.chat_template)


class RadixClient:
    """Blocking client. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = 300.0,
        unary_timeout: float = 10.0,
        retries: int = 4,
        api_key: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.unary_timeout = unary_timeout
        self.channel = grpc.insecure_channel(address, options=channel_options(retries))
        self.stub = tokenizer_pb2_grpc.TokenizerServiceStub(self.channel)
        self._owners = _Owners(api_key)

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Iterable[Message] | None = None,
        token_ids: Sequence[int] | None = None,
        rid: str = "",
        timeout: float | None = None,
        **sampling: Any,
    ) -> Iterator[GenerateChunk]:
        """Streams a generation from text, chat messages or token ids (exactly one)."""
        req = generate_request(prompt, messages=messages, token_ids=token_ids, rid=rid, **sampling)
        call = self.stub.Generate(req, timeout=timeout or self.timeout, metadata=self._owners.md)
        try:
            self._owners.started(rid, call.initial_metadata())
            for resp in call:
                yield GenerateChunk.from_pb(resp)
        finally:
            self._owners.ended(rid)
            call.cancel()  # no-op once finished; aborts the request when left early

    def chat(self, messages: Iterable[Message], **kwargs: Any) -> Completion:
        return self._gather(self.generate(messages=messages, **kwargs))

    def complete(self, prompt: str | Sequence[int], **kwargs: Any) -> Completion:
        if isinstance(prompt, str):
            return self._gather(self.generate(prompt, **kwargs))
        return self._gather(self.generate(token_ids=prompt, **kwargs))

    @staticmethod
    def _gather(chunks: Iterable[GenerateChunk]) -> Completion:
        return Completion.gather(chunks)  # n samples: out.choices[i]

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        req = tokenizer_pb2.TokenizeRequest(text=text, add_special_tokens=add_special_tokens)
        return list(
            self.stub.Tokenize(req, timeout=self.unary_timeout, metadata=self._owners.md).ids
        )

    def detokenize(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        req = tokenizer_pb2.DetokenizeRequest(ids=ids, skip_special_tokens=skip_special_tokens)
        return self.stub.Detokenize(req, timeout=self.unary_timeout, metadata=self._owners.md).text

    def model_info(self) -> ServedModel:
        req = tokenizer_pb2.GetModelInfoRequest()
        return _served(
            self.stub.GetModelInfo(req, timeout=self.unary_timeout, metadata=self._owners.md)
        )

    def abort(self, rid: str) -> bool:
        req = tokenizer_pb2.AbortRequest(rid=rid)
        md = self._owners.for_abort(rid)
        return self.stub.Abort(req, timeout=self.unary_timeout, metadata=md).found

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RadixClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRadixClient:
    """asyncio client (grpc.aio). Create it inside the event loop that uses it."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = 300.0,
        unary_timeout: float = 10.0,
        retries: int = 4,
        api_key: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.unary_timeout = unary_timeout
        self.channel = grpc.aio.insecure_channel(address, options=channel_options(retries))
        self.stub = tokenizer_pb2_grpc.TokenizerServiceStub(self.channel)
        self._owners = _Owners(api_key)

    async def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Iterable[Message] | None = None,
        token_ids: Sequence[int] | None = None,
        rid: str = "",
        timeout: float | None = None,
        **sampling: Any,
    ) -> AsyncIterator[GenerateChunk]:
        """Streams a generation from text, chat messages or token ids (exactly one)."""
        req = generate_request(prompt, messages=messages, token_ids=token_ids, rid=rid, **sampling)
        call = self.stub.Generate(req, timeout=timeout or self.timeout, metadata=self._owners.md)
        try:
            self._owners.started(rid, await call.initial_metadata())
            async for resp in call:
                yield GenerateChunk.from_pb(resp)
        finally:
            self._owners.ended(rid)
            call.cancel()

    async def chat(self, messages: Iterable[Message], **kwargs: Any) -> Completion:
        return await self._gather(self.generate(messages=messages, **kwargs))

    async def complete(self, prompt: str | Sequence[int], **kwargs: Any) -> Completion:
        if isinstance(prompt, str):
            return await self._gather(self.generate(prompt, **kwargs))
        return await self._gather(self.generate(token_ids=prompt, **kwargs))

    @staticmethod
    async def _gather(chunks: AsyncIterator[GenerateChunk]) -> Completion:
        by_index: dict[int, Completion] = {}
        async for chunk in chunks:
            by_index.setdefault(chunk.index, Completion(index=chunk.index)).add(chunk)
        return Completion.of(by_index)  # n samples: out.choices[i]

    async def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        req = tokenizer_pb2.TokenizeRequest(text=text, add_special_tokens=add_special_tokens)
        return list(
            (
                await self.stub.Tokenize(req, timeout=self.unary_timeout, metadata=self._owners.md)
            ).ids
        )

    async def detokenize(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        req = tokenizer_pb2.DetokenizeRequest(ids=ids, skip_special_tokens=skip_special_tokens)
        return (
            await self.stub.Detokenize(req, timeout=self.unary_timeout, metadata=self._owners.md)
        ).text

    async def model_info(self) -> ServedModel:
        req = tokenizer_pb2.GetModelInfoRequest()
        return _served(
            await self.stub.GetModelInfo(req, timeout=self.unary_timeout, metadata=self._owners.md)
        )

    async def abort(self, rid: str) -> bool:
        req = tokenizer_pb2.AbortRequest(rid=rid)
        md = self._owners.for_abort(rid)
        return (await self.stub.Abort(req, timeout=self.unary_timeout, metadata=md)).found

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncRadixClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Owners:
    """The caller's credentials on every call (the front door's API key, when it has one) and
    the owner ticket of each running request started under a rid of the caller's choosing: an
    Abort of that rid carries it (without a key, only the ticket proves the request is ours)."""

    def __init__(self, api_key: str | None) -> None:
        self.md: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self._tickets: dict[str, str] = {}

    def started(self, rid: str, initial_metadata: Any) -> None:
        if rid:
            self._tickets[rid] = owner_ticket(initial_metadata)

    def ended(self, rid: str) -> None:
        self._tickets.pop(rid, None)

    def for_abort(self, rid: str) -> tuple[tuple[str, str], ...]:
        ticket = self._tickets.get(rid.partition("#")[0], "")
        return self.md + (((OWNER_HEADER, ticket),) if ticket else ())
