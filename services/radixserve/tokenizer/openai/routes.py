"""The OpenAI-compatible FastAPI app: routes, the API key and CORS around them.

The routes only parse and hand over: generation to :mod:`.serving_chat` and
:mod:`.serving_completions`, errors to :mod:`.errors`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.cors import CORSMiddleware

from radixserve.common.errors import InvalidArgument
from radixserve.common.security import bearer_matches
from radixserve.tokenizer import observability_http, tool_calls
from radixserve.tokenizer.frontend import Frontend
from radixserve.tokenizer.metrics import TokenizerMetrics
from radixserve.tokenizer.openai.errors import error_body, error_response, install_error_handlers
from radixserve.tokenizer.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from radixserve.tokenizer.openai.serving_base import check_model
from radixserve.tokenizer.openai.serving_chat import ChatServing
from radixserve.tokenizer.openai.serving_completions import CompletionServing
from radixserve.tokenizer.serving import Serving

logger = logging.getLogger(__name__)
# Open without the API key: probes and scrapers carry no credentials.
_OPEN_PATHS = ("/health", "/metrics", "/version")


def create_app(
    frontend: Frontend,
    metrics: TokenizerMetrics,
    api_key: str = "",
    allowed_origins: str = "",
) -> FastAPI:
    """The OpenAI-compatible API over ``frontend``.

    ``api_key``: when set, every path but health, metrics and version needs
    ``Authorization: Bearer <key>`` (401 otherwise). ``allowed_origins``: comma-separated CORS
    origins (``*`` for any); empty sends no CORS headers. The service passes its
    :class:`~radixserve.tokenizer.config.TokenizerConfig`'s (``http_server.start_http``).
    """
    app = FastAPI(title="radixserve", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    # metrics middleware, /start_profile (admin: only behind the API key)
    observability_http.mount(app, metrics, frontend, admin=bool(api_key))
    _install_api_key(app, api_key)
    origins = [o.strip() for o in allowed_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"]
        )
    # NOTE: the order of the routes is their order in /openapi.json.
    app.include_router(_generation_routes(frontend, Serving(frontend.manager, metrics)))
    app.include_router(_token_routes(frontend))
    app.include_router(_info_routes(frontend, metrics))
    return app


def _generation_routes(frontend: Frontend, serving: Serving) -> APIRouter:
    router = APIRouter()
    chat = ChatServing(frontend, serving)
    completion = CompletionServing(frontend, serving)

    @router.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await chat.handle(body, request)

    @router.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await completion.handle(body, request)

    @router.post("/v1/embeddings")
    async def embeddings() -> Response:
        # NOTE: a generative model's last hidden state is no trained embedding; refuse clearly.
        message = f"embeddings are not served: {frontend.model_name} is a generative model"
        return error_response(404, message, "model", "model_not_found")

    return router


def _token_routes(frontend: Frontend) -> APIRouter:
    router = APIRouter()

    @router.post("/tokenize")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        check_model(frontend, body.model)
        if body.messages is not None:
            # NOTE: chat's own plan, so tools and assistant tool_calls count as chat renders them.
            chat = tool_calls.ToolRequest(
                body.messages, body.tools, body.tool_choice, body.parallel_tool_calls
            )
            plan = tool_calls.plan(chat, frontend.tokenizer)
            ids = frontend.builder.ids_from_chat(
                chat.messages,
                "messages",
                tools=plan.tools,
                add_generation_prompt=body.add_generation_prompt,
            )
        elif body.tools is not None:
            raise InvalidArgument("need messages", "tools")
        elif body.prompt is not None:
            ids = await frontend.tokenize(body.prompt, body.add_special_tokens, "prompt")
        else:
            raise InvalidArgument("give prompt or messages", "prompt")
        info = frontend.info
        return {"tokens": ids, "count": len(ids), "max_model_len": info.max_context_len}

    @router.post("/detokenize")
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        check_model(frontend, body.model)
        ids = frontend.builder.check_ids(body.tokens, "tokens") if body.tokens else []
        return {"prompt": frontend.tokenizer.decode(ids)}

    return router


def _info_routes(frontend: Frontend, metrics: TokenizerMetrics) -> APIRouter:
    router = APIRouter()

    @router.get("/version")
    async def version() -> dict[str, str]:
        return {"version": _version()}

    @router.get("/metrics")
    async def metrics_text() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(frontend)]}

    @router.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        check_model(frontend, model_id)
        return _model_card(frontend)

    @router.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> Response:
        # Readiness: follows the scheduler link(s) and turns 503 while draining.
        if not frontend.ready:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return router


def _install_api_key(app: FastAPI, api_key: str) -> None:
    """401 without ``Authorization: Bearer <api_key>`` (constant-time compare, the scheme in
    any case; the gRPC door checks the same, ``security.ApiKeyInterceptor``), when one is set."""
    if not api_key:
        return

    @app.middleware("http")
    async def _check_key(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if request.method == "OPTIONS" or path in _OPEN_PATHS:
            return await call_next(request)
        if not bearer_matches(request.headers.get("authorization", ""), api_key):
            body = error_body("invalid or missing API key", kind="authentication_error")
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
