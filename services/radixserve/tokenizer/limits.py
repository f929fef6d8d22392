"""Admission limits of the front door (like TGI's): checked before a request is registered.

Transport-free. ``Limits.check`` raises InvalidArgument naming the field (HTTP 400, gRPC
INVALID_ARGUMENT). The concurrency bound lives in the manager (429 / RESOURCE_EXHAUSTED) and the
size of a whole request body or message in the transports (413 / RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from radixserve.common.errors import InvalidArgument
from radixserve.tokenizer.prompts import GenerateInput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_stop_strings: int = 64
    max_stop_chars: int = 1024  # per stop string
    max_input_tokens: int = 0  # 0: only the model's context bounds a prompt

    def check(self, req: GenerateInput) -> None:
        if len(req.stop) > self.max_stop_strings:
            raise InvalidArgument(
                f"{len(req.stop)} stop strings, more than max_stop_strings "
                f"({self.max_stop_strings})",
                "stop",
            )
        longest = max((len(s) for s in req.stop), default=0)
        if longest > self.max_stop_chars:
            raise InvalidArgument(
                f"a stop string of {longest} characters, longer than max_stop_chars "
                f"({self.max_stop_chars})",
                "stop",
            )
        if self.max_input_tokens and len(req.input_ids) > self.max_input_tokens:
            raise InvalidArgument(
                f"{len(req.input_ids)} prompt tokens, more than max_input_tokens "
                f"({self.max_input_tokens})",
                "prompt",
            )


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 without keeping it.

    A declared Content-Length over the limit is refused before any byte is handed to the app; a
    chunked body is cut as soon as it passes the limit (the app then sees a disconnect and its own
    answer is dropped). Either way the rest of the upload is read and dropped before the answer
    is completed and the connection closed (a "lingering close", bounded by
    ``DISCARD_SECONDS``/``DISCARD_BYTES``): closing with unread bytes in the socket makes the
    kernel send a reset, and a client still sending (most send the whole body before reading)
    would lose the 413 it had been sent.
    """

    DISCARD_SECONDS = 10.0
    DISCARD_BYTES = 1 << 30

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(receive, send, more=True)
            return
        seen = 0
        refused = False

        async def limited_receive() -> dict:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    await self._refuse(receive, send, more=bool(message.get("more_body")))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, receive: Any, send: Any, more: bool) -> None:
        """Sends the whole 413 body but completes the response only after the upload is dropped."""
        body = json.dumps(
            {
                "error": {
                    "message": f"request body larger than max_body_bytes ({self.max_bytes})",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "request_too_large",
                }
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        if more:
            try:
                await asyncio.wait_for(_discard(receive, self.DISCARD_BYTES), self.DISCARD_SECONDS)
            except asyncio.TimeoutError:
                pass  # NOTE: bounded on purpose; a client still sending may then lose the answer
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _discard(receive: Any, limit: int) -> None:
    """Reads the rest of a refused body (at most ``limit`` bytes) and drops it, chunk by chunk."""
    dropped = 0
    while dropped < limit:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return
        dropped += len(message.get("body", b""))
