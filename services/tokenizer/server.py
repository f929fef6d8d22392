"""TokenizerService servicer (pb <-> domain only) and the service's start-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from radixserve.v1 import tokenizer_pb2, tokenizer_pb2_grpc
from services.common import pbconv
from services.common.errors import InvalidArgument
from services.common.grpc_util import abort_with
from services.common.metrics import serve_metrics
from services.common.model_source import resolve_model
from services.common.server import ServiceServer
from services.tokenizer.config import TokenizerConfig
from services.tokenizer.frontend import Frontend
from services.tokenizer.manager import Chunk, RequestManager
from services.tokenizer.metrics import TokenizerMetrics
from services.tokenizer.pool import SchedulerPool
from services.tokenizer.prompts import GenerateInput, PromptBuilder
from services.tokenizer.samples import check_n, expand, interleave
from services.tokenizer.tokenization import load_tokenizer

logger = logging.getLogger(__name__)
SERVICE = tokenizer_pb2.DESCRIPTOR.services_by_name["TokenizerService"].full_name


class TokenizerServicer(tokenizer_pb2_grpc.TokenizerServiceServicer):
    def __init__(self, frontend: Frontend, metrics: TokenizerMetrics) -> None:
        self.fe = frontend
        self.metrics = metrics

    def _input(self, request: tokenizer_pb2.GenerateRequest) -> GenerateInput:
        b = self.fe.builder
        kind = request.WhichOneof("input")
        if kind == "text":
            ids = b.ids_from_text(request.text, "text")
        elif kind == "chat":
            msgs = [{"role": m.role, "content": m.content} for m in request.chat.messages]
            ids = b.ids_from_chat(msgs, "chat.messages")
        elif kind == "token_ids":
            ids = b.check_ids(request.token_ids.ids, "token_ids.ids")
        else:
            raise InvalidArgument("one of text, chat or token_ids is required", "input")
        sp = request.sampling
        sampling = pbconv.sampling_from_pb(sp, self.fe.default_max_tokens)
        return b.build(
            ids,
            sampling,
            rid=request.rid,
            stop=list(sp.stop),
            max_tokens_given=sp.HasField("max_new_tokens"),
            field_name=kind,
            skip_special_tokens=sp.skip_special_tokens
            if sp.HasField("skip_special_tokens")
            else True,
            include_stop_str_in_output=sp.include_stop_str_in_output,
        )

    async def Generate(
        self, request: tokenizer_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tokenizer_pb2.GenerateResponse]:
        try:
            n = check_n(request.n) if request.HasField("n") else 1
            req = self._input(request)
            streams = self.fe.manager.generate_many(expand(req, n))
        except ValueError as exc:
            await abort_with(context, exc)
        chunks = streams[0] if n == 1 else interleave(streams)
        # NOTE: a client that cancels (or whose deadline passes) cancels this coroutine; closing
        # the generator aborts the request upstream.
        try:
            async with self.metrics.track(req) as track:
                async for chunk in chunks:
                    track.chunk(chunk)
                    if chunk.finish_reason == "error":
                        await context.abort(grpc.StatusCode.UNAVAILABLE, chunk.error)
                    yield _response(req.rid, chunk)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def Tokenize(
        self, request: tokenizer_pb2.TokenizeRequest, context: grpc.aio.ServicerContext
    ) -> tokenizer_pb2.TokenizeResponse:
        add = request.add_special_tokens if request.HasField("add_special_tokens") else True
        return tokenizer_pb2.TokenizeResponse(ids=self.fe.tokenizer.encode(request.text, add))

    async def Detokenize(
        self, request: tokenizer_pb2.DetokenizeRequest, context: grpc.aio.ServicerContext
    ) -> tokenizer_pb2.DetokenizeResponse:
        try:
            ids = self.fe.builder.check_ids(request.ids, "ids")
        except ValueError as exc:
            await abort_with(context, exc)
        text = self.fe.tokenizer.decode(ids, skip_special_tokens=request.skip_special_tokens)
        return tokenizer_pb2.DetokenizeResponse(text=text)

    async def GetModelInfo(
        self, request: tokenizer_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> tokenizer_pb2.GetModelInfoResponse:
        return tokenizer_pb2.GetModelInfoResponse(
            info=pbconv.model_info_to_pb(self.fe.info),
            chat_template=self.fe.tokenizer.chat_template or "",
        )

    async def Abort(
        self, request: tokenizer_pb2.AbortRequest, context: grpc.aio.ServicerContext
    ) -> tokenizer_pb2.AbortResponse:
        return tokenizer_pb2.AbortResponse(found=self.fe.manager.abort(request.rid))


def _response(rid: str, chunk: Chunk) -> tokenizer_pb2.GenerateResponse:
    resp = tokenizer_pb2.GenerateResponse(
        rid=rid,
        text=chunk.text,
        token_ids=chunk.token_ids,
        logprobs=chunk.logprobs,
        finish_reason=pbconv.finish_reason_to_pb(chunk.finish_reason),
        index=chunk.index,
    )
    resp.usage.prompt_tokens = chunk.prompt_tokens
    resp.usage.completion_tokens = chunk.completion_tokens
    resp.usage.cached_tokens = chunk.cached_tokens
    resp.top_logprobs.extend(pbconv.top_logprobs_to_pb(t) for t in chunk.top_logprobs)
    return resp


@dataclass
class RunningTokenizer:
    server: ServiceServer
    frontend: Frontend
    link: SchedulerPool
    http: object | None = None  # uvicorn.Server
    http_task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        if self.http is not None:
            self.http.should_exit = True  # type: ignore[attr-defined]
            if self.http_task is not None:
                await self.http_task
        await self.server.stop()
        await self.link.close()


async def start_tokenizer(cfg: TokenizerConfig) -> RunningTokenizer:
    """Loads the vocabulary, waits for the scheduler, then serves gRPC and HTTP."""
    metrics = TokenizerMetrics()
    serve_metrics(metrics.registry, cfg.metrics_port)
    source = resolve_model(cfg.model or None, cfg.load_format)
    tokenizer = await asyncio.to_thread(load_tokenizer, source)
    link = SchedulerPool(cfg.scheduler_address, cfg.name, cfg.load_poll_seconds)
    await link.wait_ready(cfg.scheduler_wait_seconds)
    try:
        info = await link.get_engine_info()
    except BaseException:
        await link.close()
        raise
    manager = RequestManager(tokenizer, link, cfg.stream_interval)
    frontend = Frontend(
        tokenizer=tokenizer,
        info=info,
        builder=PromptBuilder(tokenizer, info),
        manager=manager,
        model_name=cfg.served_model_name or info.model_name or source.name,
        default_max_tokens=cfg.default_max_tokens,
    )
    link.start(manager)
    servicer = TokenizerServicer(frontend, metrics)
    server = ServiceServer("tokenizer", f"{cfg.host}:{cfg.port}", [SERVICE])
    await server.start(
        lambda s: tokenizer_pb2_grpc.add_TokenizerServiceServicer_to_server(servicer, s)
    )
    running = RunningTokenizer(server, frontend, link)
    if cfg.http_port >= 0:
        from services.tokenizer.http_api import start_http

        running.http, running.http_task = await start_http(
            frontend, metrics, cfg.host, cfg.http_port, cfg.api_key, cfg.allowed_origins
        )
    await server.set_ready(True)
    logger.info(
        "tokenizer ready", extra={"kv": {"model": frontend.model_name, "grpc": server.port}}
    )
    return running
