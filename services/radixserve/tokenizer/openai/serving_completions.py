"""``POST /v1/completions``: one prompt or a batch (text or token ids), each run with its ``n``
choices and answered in completion shapes (:class:`~.render.Format`)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from radixserve.common.errors import InvalidArgument
from radixserve.tokenizer.openai.protocol import CompletionRequest
from radixserve.tokenizer.openai.render import CompletionFormat
from radixserve.tokenizer.openai.serving_base import OpenAIServing, body_size, check_model

logger = logging.getLogger(__name__)

MAX_PROMPTS = 64  # prompts in one /v1/completions batch


class CompletionServing(OpenAIServing):
    async def handle(self, body: CompletionRequest, request: Request) -> Response:
        fe = self.fe
        check_model(fe, body.model)
        prompts = await fe.offload(body_size(request), self.prompts_ids, body.prompt)
        reqs = [self.build(ids, body, "prompt") for ids in prompts]
        logprobs = body.logprobs is not None
        fmt = CompletionFormat(fe.model_name, fe.tokenizer, logprobs, reqs[0].sampling.top_logprobs)
        if body.echo:
            fmt.echo = [fe.tokenizer.decode(r.input_ids) for r in reqs]
        return await self.respond(request, reqs, body, fmt)

    def prompts_ids(self, prompt: Any) -> list[list[int]]:
        """Token ids of each prompt: a string, a token-id list, or a list of either (a batch)."""
        batch = isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], (str, list))
        prompts = prompt if batch else [prompt]
        if len(prompts) > MAX_PROMPTS:
            raise InvalidArgument(f"at most {MAX_PROMPTS} prompts in one request", "prompt")
        out = []
        for i, one in enumerate(prompts):
            name = f"prompt[{i}]" if batch else "prompt"
            if isinstance(one, str):
                out.append(self.fe.ids_from_text(one, name))
            else:
                out.append(self.fe.builder.check_ids(one, name))
        return out
