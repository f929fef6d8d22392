"""The OpenAI-compatible HTTP API (FastAPI on uvicorn), served in the tokenizer's event loop.

Both endpoints build a :class:`GenerateInput` with the shared :class:`PromptBuilder` and read the
manager's coalesced chunks, as the gRPC ``Generate`` does. Streaming answers are SSE
(``data: {json}`` ... ``data: [DONE]``).

NOTE: a client that goes away must abort its request. Every path closes the manager's generator:
before the stream starts a watcher on ``http.disconnect`` cancels the wait, and once streaming,
Starlette cancels the SSE generator on disconnect, whose ``finally`` closes the chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import importlib.util
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from radixserve.common import security
from radixserve.common.errors import InvalidArgument, NotFound, RequestError
from radixserve.common.grammars import check_constraint
from radixserve.tokenizer import observability_http, tool_calls
from radixserve.tokenizer import openai_protocol as oai
from radixserve.tokenizer.frontend import Frontend
from radixserve.tokenizer.limits import BodyLimit
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.metrics import TokenizerMetrics
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.tokenizer.samples import expand, interleave

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PROMPTS = 64  # prompts in one /v1/completions batch
# Open without the API key: probes and scrapers carry no credentials.
_OPEN_PATHS = ("/health", "/metrics", "/version")


class ClientGone(Exception):
    """The HTTP client disconnected before its answer was ready."""


class _Serving:
    def __init__(self, frontend: Frontend, metrics: TokenizerMetrics) -> None:
        self.fe = frontend
        self.metrics = metrics

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.fe.model_name:
            raise NotFound(f"the model `{model}` does not exist", "model")

    def build(self, ids: list[int], body: oai._SamplingRequest, field_name: str) -> GenerateInput:
        info = self.fe.info
        sampling, given = oai.sampling_params(body, info.max_context_len, info.vocab_size)
        if sampling.constraint is not None:
            check_constraint(sampling.constraint, oai.constraint(body)[1] or "constraint")
        return self.fe.builder.build(
            ids,
            sampling,
            stop=oai.stop_strings(body.stop),
            max_tokens_given=given,
            field_name=field_name,
            skip_special_tokens=body.skip_special_tokens,
            include_stop_str_in_output=body.include_stop_str_in_output,
        )

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

    async def chunks(self, reqs: list[GenerateInput], n: int = 1) -> AsyncIterator[Chunk]:
        """Chunks of every prompt's n samples; ``index`` is prompt * n + sample (as OpenAI's)."""
        manager = self.fe.manager
        req = reqs[0]
        if len(reqs) == 1 and n == 1:
            gen = manager.generate(req)
        else:
            gen = interleave(manager.generate_many([s for r in reqs for s in expand(r, n)]))
        try:
            async with self.metrics.track(req) as track:
                async for chunk in gen:
                    track.chunk(chunk)
                    yield chunk
        finally:
            await gen.aclose()  # aborts upstream unless the request finished

    async def respond(
        self,
        request: Request,
        reqs: list[GenerateInput],
        body: oai._SamplingRequest,
        fmt: oai.Format,
    ) -> Response:
        n = body.n * len(reqs)  # choices in all
        fmt.per_prompt = body.n
        chunks = self.chunks(reqs, body.n)
        prompt_len = sum(len(r.input_ids) for r in reqs)
        try:
            if not body.stream:
                totals = await _until_disconnect(request, _collect(chunks, n))
                failed = next((t for t in totals if t.finish_reason == "error"), None)
                if failed is not None:
                    return _engine_error(failed)
                return JSONResponse(fmt.response(totals, prompt_len))
            first = await _until_disconnect(request, chunks.__anext__())
        except ClientGone:
            await chunks.aclose()
            return Response(status_code=499)
        except BaseException:
            await chunks.aclose()
            raise
        if first.finish_reason == "error":
            await chunks.aclose()
            return _engine_error(first)
        stream = _sse(first, chunks, fmt, prompt_len, body.include_usage, n)
        return _SSEResponse(stream)


class _SSEResponse(StreamingResponse):
    """SSE that always closes its generator, even when a send fails on a gone client."""

    media_type = "text/event-stream"

    def __init__(self, stream: AsyncIterator[str]) -> None:
        super().__init__(stream, headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[union-attr]


async def _collect(chunks: AsyncIterator[Chunk], n: int = 1) -> list[Chunk]:
    """One merged chunk per sample, by index."""
    totals = [Chunk(index=i) for i in range(n)]
    async for chunk in chunks:
        totals[chunk.index].merge(chunk)
    for total in totals:
        if total.finish_reason is None:
            total.finish_reason = "abort"
    return totals


async def _wait_disconnect(request: Request) -> None:
    # NOTE: FastAPI has read the whole body, so receive() blocks until the client disconnects.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Awaits ``work``; cancels it and raises ClientGone if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # no-op when done
    if not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientGone
    return task.result()


async def _sse(
    first: Chunk,
    chunks: AsyncIterator[Chunk],
    fmt: oai.Format,
    prompt_len: int,
    with_usage: bool,
    n: int = 1,
) -> AsyncIterator[str]:
    totals = [Chunk(index=i) for i in range(n)]
    unfinished = n
    chunk: Chunk | None = first
    try:
        for event in fmt.head(with_usage, n):
            yield _event(event)
        while chunk is not None:
            totals[chunk.index].merge(chunk)
            if chunk.finish_reason == "error":
                yield _event(oai.error_body(chunk.error or "engine error", kind="server_error"))
                break
            event = fmt.event(chunk, with_usage)  # NOTE: sse(fmt.chunk(...)), built faster
            if event is not None:
                yield event
            unfinished -= chunk.finish_reason is not None
            if unfinished == 0:
                break
            chunk = await anext(chunks, None)
        if with_usage:
            yield _event(fmt.usage_chunk(totals, prompt_len))
        yield "data: [DONE]\n\n"
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def _event(payload: dict[str, Any]) -> str:
    return oai.sse(payload)


def _engine_error(chunk: Chunk) -> JSONResponse:
    message = chunk.error or "the engine failed"
    return JSONResponse(oai.error_body(message, kind="server_error"), status_code=503)


def _error(status: int, message: str, param: str | None, code: Any = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(oai.error_body(message, param, kind, code), status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, RequestError):  # raised by a model validator: keep its field
            return _error(cause.http_status, str(cause), cause.field)
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return _error(400, f"malformed JSON body: {detail}".rstrip(": "), None)
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        if err.get("type") == "extra_forbidden":
            return _error(400, f"{param}: is not a supported parameter", param)
        if param is None and err.get("type") == "model_attributes_type":
            return _error(400, "request body: must be a JSON object", None)
        return _error(400, f"{param or 'request body'}: {err.get('msg')}", param)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        code = "model_not_found" if isinstance(exc, NotFound) and exc.field == "model" else None
        return _error(exc.http_status, str(exc), exc.field, code)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        param = str(exc).split(":", 1)[0].split("[", 1)[0] if ":" in str(exc) else None
        return _error(400, str(exc), param)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), None)


def create_app(
    frontend: Frontend,
    metrics: TokenizerMetrics,
    api_key: str = "",
    allowed_origins: str = "",
) -> FastAPI:
    """The OpenAI-compatible API over ``frontend``.

    ``api_key``: when set, every path but health, metrics and version needs
    ``Authorization: Bearer <key>`` (401 otherwise). ``allowed_origins``: comma-separated CORS
    origins (``*`` for any); empty sends no CORS headers.
    """
    app = FastAPI(title="radixserve", docs_url=None, redoc_url=None)
    serving = _Serving(frontend, metrics)
    _install_error_handlers(app)
    observability_http.mount(app, metrics, frontend)  # metrics middleware, /start_profile
    _install_api_key(app, api_key)
    origins = [o.strip() for o in allowed_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"]
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(body: oai.ChatCompletionRequest, request: Request) -> Response:
        serving.check_model(body.model)
        chat = tool_calls.plan(body, frontend.tokenizer)
        ids = await frontend.offload(
            _size(request),
            functools.partial(frontend.builder.ids_from_chat, tools=chat.tools),
            body.messages,
            "messages",
        )
        req = tool_calls.constrain(serving.build(ids, body, "messages"), chat)
        fmt = oai.ChatFormat(
            frontend.model_name, frontend.tokenizer, body.logprobs, req.sampling.top_logprobs
        )
        fmt.tool_parser = chat.parser
        return await serving.respond(request, [req], body, fmt)

    @app.post("/v1/completions")
    async def completions(body: oai.CompletionRequest, request: Request) -> Response:
        serving.check_model(body.model)
        prompts = await frontend.offload(_size(request), serving.prompts_ids, body.prompt)
        reqs = [serving.build(ids, body, "prompt") for ids in prompts]
        fmt = oai.CompletionFormat(
            frontend.model_name,
            frontend.tokenizer,
            body.logprobs is not None,
            reqs[0].sampling.top_logprobs,
        )
        if body.echo:
            fmt.echo = [frontend.tokenizer.decode(r.input_ids) for r in reqs]
        return await serving.respond(request, reqs, body, fmt)

    @app.post("/v1/embeddings")
    async def embeddings() -> Response:
        # NOTE: a generative model's last hidden state is no trained embedding; refuse clearly.
        message = f"embeddings are not served: {frontend.model_name} is a generative model"
        return _error(404, message, "model", "model_not_found")

    @app.post("/tokenize")
    async def tokenize(body: oai.TokenizeRequest) -> dict[str, Any]:
        serving.check_model(body.model)
        if body.messages is not None:
            ids = frontend.builder.ids_from_chat(
                body.messages, "messages", add_generation_prompt=body.add_generation_prompt
            )
        elif body.prompt is not None:
            ids = frontend.tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens)
        else:
            raise InvalidArgument("give prompt or messages", "prompt")
        info = frontend.info
        return {"tokens": ids, "count": len(ids), "max_model_len": info.max_context_len}

    @app.post("/detokenize")
    async def detokenize(body: oai.DetokenizeRequest) -> dict[str, Any]:
        serving.check_model(body.model)
        ids = frontend.builder.check_ids(body.tokens, "tokens") if body.tokens else []
        return {"prompt": frontend.tokenizer.decode(ids)}

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": _version()}

    @app.get("/metrics")
    async def metrics_text() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(frontend)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        serving.check_model(model_id)
        return _model_card(frontend)

    @app.get("/health")
    async def health() -> Response:
        # Readiness: follows the scheduler link(s) and turns 503 while draining.
        if not frontend.ready:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app


def _size(request: Request) -> int:
    """The body's size: large prompts are tokenized off the event loop."""
    length = request.headers.get("content-length", "")
    return int(length) if length.isdigit() else 0


def _install_api_key(app: FastAPI, api_key: str) -> None:
    """401 without ``Authorization: Bearer <api_key>`` (constant-time compare), when one is set."""
    if not api_key:
        return
    expected = f"Bearer {api_key}".encode()

    @app.middleware("http")
    async def _check_key(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if request.method == "OPTIONS" or path in _OPEN_PATHS:
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            body = oai.error_body("invalid or missing API key", kind="authentication_error")
            body["error"]["code"] = "invalid_api_key"
            return JSONResponse(body, status_code=401)
        return await call_next(request)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    try:
        return pkg_version("radixserve")
    except PackageNotFoundError:
        return os.environ.get("RADIXSERVE_VERSION", "0.0.0+local")


def _model_card(frontend: Frontend) -> dict[str, Any]:
    return {
        "id": frontend.model_name,
        "object": "model",
        "created": 0,
        "owned_by": "radixserve",
        "max_model_len": frontend.info.max_context_len,
    }


HTTP_IMPLS = ("auto", "httptools", "h11")


def http_protocol(choice: str) -> str:
    """uvicorn's HTTP/1.1 implementation: ``httptools`` (C parser, several times less Python per
    SSE event than h11), ``h11`` (pure Python), or ``auto`` (httptools when installed)."""
    if choice not in HTTP_IMPLS:
        raise ValueError(f"http_impl: unknown {choice!r}, known: {', '.join(HTTP_IMPLS)}")
    if choice == "auto":
        choice = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    elif choice == "httptools" and importlib.util.find_spec("httptools") is None:
        raise ValueError("http_impl: httptools is not installed (pip install httptools)")
    return choice


class _Server(uvicorn.Server):
    """uvicorn without signal handling: the service's ``__main__`` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


async def start_http(
    frontend: Frontend,
    metrics: TokenizerMetrics,
    host: str,
    port: int,
    max_body_bytes: int = 0,
    api_key: str | None = None,
    allowed_origins: str | None = None,
    http_impl: str = "auto",
) -> tuple[uvicorn.Server, asyncio.Task]:
    """Serves the API on ``host:port`` in the running loop; returns once it accepts connections.

    Raises OSError when the port cannot be bound. Stop it with ``server.should_exit = True`` and
    await the task. ``api_key`` / ``allowed_origins`` default to ``RADIXSERVE_API_KEY`` /
    ``RADIXSERVE_ALLOWED_ORIGINS``. ``http_impl``: see :func:`http_protocol`.
    """
    if api_key is None:
        api_key = os.environ.get("RADIXSERVE_API_KEY", "")
    if allowed_origins is None:
        allowed_origins = os.environ.get("RADIXSERVE_ALLOWED_ORIGINS", "")
    protocol = http_protocol(http_impl)
    config = uvicorn.Config(
        BodyLimit(create_app(frontend, metrics, api_key, allowed_origins), max_body_bytes),
        host=host,
        port=port,
        http=protocol,
        log_level="warning",
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,  # the service drained its streams before stopping us
        **security.uvicorn_ssl(),
    )
    server = _Server(config)
    sock = _bind(host, port)  # binding here turns a busy port into OSError, not SystemExit
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http-api")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"HTTP API on {host}:{port} stopped during start-up")
        await asyncio.sleep(0.01)
    address = f"{host}:{sock.getsockname()[1]}"
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # asyncio or uvloop
    logger.info("http serving", extra={"kv": {"address": address, "http": protocol, "loop": loop}})
    return server, task
