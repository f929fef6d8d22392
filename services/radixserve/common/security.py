"""Transport security shared by every service: TLS / mTLS certificates and a shared token.

One process has one :class:`SecurityConfig` (flags ``--tls-cert`` ... parsed by ``run_service``,
or ``RADIXSERVE_TLS_CERT`` ... in the environment; tests call :func:`configure`). Every channel to
a peer is made by :func:`make_channel` and every gRPC port is opened by :func:`add_port`:

- ``tls_cert`` + ``tls_key``: servers speak TLS. With ``tls_ca`` too, internal servers require a
  client certificate signed by that CA (mTLS) and clients present theirs and verify the server.
- ``auth_token`` (or ``auth_token_file``, e.g. a mounted Kubernetes secret): clients send it in
  the ``x-radixserve-token`` header and internal servers refuse calls without it
  (UNAUTHENTICATED), health checks excepted so that probes keep working.

The front door is public (``public=True``): TLS without client certificates and no shared token;
with an API key it requires ``authorization: Bearer <key>`` instead (:class:`ApiKeyInterceptor`,
the same rule as the HTTP API's, :func:`bearer_matches`).

An internal port bound beyond loopback without the token or mTLS refuses to start
(:func:`check_exposure`) unless ``allow_unauthenticated`` is set: anyone who reaches an open
worker or scheduler can replace sessions, flush caches or queue work past the front door.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

logger = logging.getLogger(__name__)

TOKEN_HEADER = "x-radixserve-token"
_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)  # probes carry no credentials
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True)
class SecurityConfig:
    """How services authenticate each other (see the module docstring)."""

    tls_cert: str = field(default="", metadata={"help": "PEM certificate file of this service"})
    tls_key: str = field(default="", metadata={"help": "PEM private key file of tls_cert"})
    tls_ca: str = field(
        default="", metadata={"help": "PEM CA bundle: verify peers; internal ports require mTLS"}
    )
    tls_server_name: str = field(
        default="", metadata={"help": "name to expect in peers' certificates (default: host)"}
    )
    auth_token: str = field(default="", metadata={"help": "shared token between services"})
    auth_token_file: str = field(default="", metadata={"help": "file holding the shared token"})
    allow_unauthenticated: bool = field(
        default=False,
        metadata={
            "help": "let an internal port bound beyond loopback start without the shared token "
            "or mTLS (anyone who reaches it can drive the engine)"
        },
    )

    @property
    def token(self) -> str:
        if self.auth_token:
            return self.auth_token
        if self.auth_token_file:
            with open(self.auth_token_file, encoding="utf-8") as f:
                return f.read().strip()
        return ""

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @property
    def authenticated(self) -> bool:
        """Internal callers must prove themselves: a shared token, or client certificates."""
        return bool(self.token) or (self.tls and bool(self.tls_ca))


_current = SecurityConfig()


def configure(cfg: SecurityConfig) -> None:
    """Sets this process's security; fails at once on missing files or half a key pair."""
    global _current
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ValueError("tls_cert and tls_key: set both or neither")
    for name in ("tls_cert", "tls_key", "tls_ca", "auth_token_file"):
        path = getattr(cfg, name)
        if path and not os.path.isfile(path):
            raise ValueError(f"{name}: no such file {path!r}")
    if cfg.auth_token_file and not cfg.token:
        raise ValueError(f"auth_token_file: {cfg.auth_token_file!r} is empty")
    _current = cfg
    logger.info("security", extra={"kv": {"tls": cfg.tls, "mtls": cfg.tls and bool(cfg.tls_ca)}})


def current() -> SecurityConfig:
    return _current


def from_env() -> SecurityConfig:
    """The ``RADIXSERVE_TLS_*`` / ``RADIXSERVE_AUTH_TOKEN*`` environment, for non-flag users."""
    from radixserve.common.config import config_from_namespace

    return config_from_namespace(SecurityConfig)


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


# ---- clients -------------------------------------------------------------------------------


# A client interceptor's ``continuation``: it starts the call (the request or request iterator as
# its second argument) and returns the call object.
_Continuation = Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]]


class _AddToken:
    """Adds the shared token to every call (works on insecure channels, unlike call creds).

    NOTE: grpc.aio files each interceptor under the first call kind it implements, so there is
    one small class per kind below, not one class implementing all four.
    """

    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(d.metadata or ()))
        metadata.add(TOKEN_HEADER, self.token)
        return grpc.aio.ClientCallDetails(
            d.method, d.timeout, metadata, d.credentials, d.wait_for_ready
        )


class _TokenUU(_AddToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: _Continuation, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _TokenUS(_AddToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: _Continuation, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _TokenSU(_AddToken, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: _Continuation,
        details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


class _TokenSS(_AddToken, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: _Continuation,
        details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


def make_channel(
    address: str,
    cfg: SecurityConfig | None = None,
    extra_options: Sequence[tuple[str, object]] | None = None,
) -> grpc.aio.Channel:
    """An aio channel to an internal peer: TLS when a CA is set, the token when one is set."""
    cfg = cfg or _current
    options = list(GRPC_OPTIONS) + list(extra_options or [])
    token = cfg.token
    interceptors = [k(token) for k in (_TokenUU, _TokenUS, _TokenSU, _TokenSS)] if token else None
    if not cfg.tls_ca:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(cfg.tls_ca),
        private_key=_read(cfg.tls_key),
        certificate_chain=_read(cfg.tls_cert),
    )
    if cfg.tls_server_name:
        options.append(("grpc.ssl_target_name_override", cfg.tls_server_name))
    return grpc.aio.secure_channel(address, creds, options=options, interceptors=interceptors)


# ---- servers -------------------------------------------------------------------------------


def is_loopback(address: str) -> bool:
    """Whether ``host:port`` binds loopback only (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or an empty host (all interfaces): not loopback


class Unprotected(ValueError):
    """An internal port would open beyond loopback without authentication."""


def check_exposure(name: str, address: str, cfg: SecurityConfig | None = None) -> None:
    """Raises :class:`Unprotected` when internal service ``name`` would bind ``address`` beyond
    loopback with neither the shared token nor mTLS, unless ``allow_unauthenticated``."""
    cfg = cfg or _current
    if is_loopback(address) or cfg.authenticated:
        return
    if cfg.allow_unauthenticated:
        logger.warning("internal port open without authentication", extra={"kv": {"a": address}})
        return
    raise Unprotected(
        f"{name}: refusing to serve {address} (beyond loopback) without authentication: set "
        "--auth-token-file (or RADIXSERVE_AUTH_TOKEN / --auth-token) on every service, or mTLS "
        "(--tls-cert, --tls-key, --tls-ca), or pass --allow-unauthenticated on purpose"
    )


def bearer_matches(header: str | bytes, key: str) -> bool:
    """``Authorization: Bearer <key>`` with the scheme in any case, in constant time (RFC 7235:
    auth schemes are case-insensitive)."""
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme, _, given = text.strip().partition(" ")
    ok_scheme = scheme.lower() == "bearer"
    return hmac.compare_digest(given.strip().encode(), key.encode()) and ok_scheme


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """The front door's API key on gRPC: every call but health checks needs ``authorization:
    Bearer <key>`` in its metadata (UNAUTHENTICATED otherwise), as the HTTP API does."""

    def __init__(self, key: str) -> None:
        self.key = key

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        if details.method.startswith(_OPEN_PREFIXES) or self._valid(details):
            return await continuation(details)
        return _refuse(await continuation(details), "invalid or missing API key")

    def _valid(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                return bearer_matches(value, self.key)
        return False


class TokenCheckInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call but health checks that lacks the shared token (UNAUTHENTICATED)."""

    def __init__(self, token: str) -> None:
        self.token = token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        if details.method.startswith(_OPEN_PREFIXES) or self._valid(details):
            return await continuation(details)
        logger.warning("call without a valid token refused", extra={"kv": {"m": details.method}})
        return _refuse(await continuation(details), "missing or wrong service token")

    def _valid(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_HEADER:
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self.token)
        return False


def _refuse(handler: grpc.RpcMethodHandler | None, why: str) -> grpc.RpcMethodHandler | None:
    """A handler of the same shape as ``handler`` that aborts UNAUTHENTICATED."""
    if handler is None:
        return None

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)

    kind = (
        "stream_stream"
        if handler.request_streaming and handler.response_streaming
        else "stream_unary"
        if handler.request_streaming
        else "unary_stream"
        if handler.response_streaming
        else "unary_unary"
    )
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(
        deny,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def server_interceptors(public: bool, cfg: SecurityConfig | None = None, api_key: str = "") -> list:
    """The token check of an internal port; the API key check of the front door (when set)."""
    cfg = cfg or _current
    if public:
        return [ApiKeyInterceptor(api_key)] if api_key else []
    token = cfg.token
    return [TokenCheckInterceptor(token)] if token else []


def add_port(
    server: grpc.aio.Server, address: str, public: bool, cfg: SecurityConfig | None = None
) -> int:
    """Opens ``address``: TLS when a certificate is set, client certificates required on an
    internal port when a CA is set too; else plaintext. Returns the port (0 when it failed)."""
    cfg = cfg or _current
    if not cfg.tls:
        return server.add_insecure_port(address)
    mtls = bool(cfg.tls_ca) and not public
    creds = grpc.ssl_server_credentials(
        [(_read(cfg.tls_key), _read(cfg.tls_cert))],
        root_certificates=_read(cfg.tls_ca) if mtls else None,
        require_client_auth=mtls,
    )
    return server.add_secure_port(address, creds)


def uvicorn_ssl(cfg: SecurityConfig | None = None) -> dict[str, Any]:
    """uvicorn.Config keyword arguments for HTTPS on the API (empty without a certificate)."""
    cfg = cfg or _current
    if not cfg.tls:
        return {}
    return {"ssl_certfile": cfg.tls_cert, "ssl_keyfile": cfg.tls_key}
