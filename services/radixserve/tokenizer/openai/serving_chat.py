"""``POST /v1/chat/completions``: messages through the chat template (with tools, their plan),
run and answered in chat shapes (:class:`~.render.ChatFormat`)."""

from __future__ import annotations

import functools
import logging

from fastapi import Request
from fastapi.responses import Response

from radixserve.tokenizer import tool_calls
from radixserve.tokenizer.openai.protocol import ChatCompletionRequest
from radixserve.tokenizer.openai.render import ChatFormat
from radixserve.tokenizer.openai.serving_base import OpenAIServing, body_size, check_model

logger = logging.getLogger(__name__)


class ChatServing(OpenAIServing):
    async def handle(self, body: ChatCompletionRequest, request: Request) -> Response:
        fe = self.fe
        check_model(fe, body.model)
        chat = tool_calls.plan(body, fe.tokenizer)
        ids = await fe.offload(
            body_size(request),
            functools.partial(fe.builder.ids_from_chat, tools=chat.tools),
            body.messages,
            "messages",
        )
        req = tool_calls.constrain(self.build(ids, body, "messages"), chat)
        fmt = ChatFormat(fe.model_name, fe.tokenizer, body.logprobs, req.sampling.top_logprobs)
        fmt.tool_parser = chat.parser
        return await self.respond(request, [req], body, fmt)
