"""Tokenizer service configuration (flags and RADIXSERVE_* environment variables)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from radixserve.common.types import DEFAULT_MAX_NEW_TOKENS


@dataclass(frozen=True)
class TokenizerConfig:
    """The front door: gRPC TokenizerService and the OpenAI-compatible HTTP API."""

    host: str = field(
        default="127.0.0.1", metadata={"help": "address to bind (0.0.0.0: every interface)"}
    )
    port: int = field(default=50051, metadata={"help": "gRPC port (0 picks a free one)"})
    http_port: int = field(default=8000, metadata={"help": "OpenAI HTTP port (-1 disables)"})
    metrics_port: int = field(default=9101, metadata={"help": "Prometheus port (0 disables)"})
    scheduler_address: str = field(
        default="localhost:50052",
        metadata={"help": "scheduler gRPC address, or a comma-separated list of engines"},
    )
    scheduler_wait_seconds: float = field(
        default=900.0, metadata={"help": "how long to wait for the scheduler at start"}
    )
    model: str = field(
        default="", metadata={"help": "GGUF file or HF directory; empty = embedded SmolLM2"}
    )
    load_format: str = field(default="auto", metadata={"help": "auto, gguf, hf or dummy"})
    served_model_name: str = field(
        default="", metadata={"help": "model name in the API; empty = from the model"}
    )
    default_max_tokens: int = field(
        default=DEFAULT_MAX_NEW_TOKENS,
        metadata={"help": "max_tokens when a gRPC request leaves it unset"},
    )
    stream_interval: int = field(
        default=1, metadata={"help": "tokens a stream accumulates before a client gets a chunk"}
    )
    load_poll_seconds: float = field(
        default=0.5, metadata={"help": "how often to poll each scheduler's load (routing)"}
    )
    name: str = field(default="tokenizer-0", metadata={"help": "replica name (logs, metrics)"})
    max_concurrent_requests: int = field(
        default=512, metadata={"help": "requests in flight before new ones get 429 (0: no bound)"}
    )
    max_body_bytes: int = field(
        default=32 * 1024 * 1024, metadata={"help": "largest HTTP body / gRPC message accepted"}
    )
    max_stop_strings: int = field(default=64, metadata={"help": "stop strings per request"})
    max_stop_chars: int = field(default=1024, metadata={"help": "characters per stop string"})
    max_input_tokens: int = field(
        default=0, metadata={"help": "prompt tokens per request (0: the model's context)"}
    )
    request_timeout_seconds: float = field(
        default=600.0,
        metadata={"help": "abort a request running longer than this (0: never; default 10 min)"},
    )
    drain_seconds: float = field(
        default=30.0, metadata={"help": "on SIGTERM, how long in-flight requests may finish"}
    )
    api_key: str = field(
        default="",
        metadata={
            "help": "API key of both doors (HTTP header / gRPC metadata authorization: Bearer "
            "<key>); empty = none. Prefer api_key_file or the variable: flags show in ps"
        },
    )
    api_key_file: str = field(
        default="", metadata={"help": "file holding the API key (e.g. a mounted Secret)"}
    )
    allowed_origins: str = field(
        default="", metadata={"help": "comma-separated CORS origins of the HTTP API (* = any)"}
    )
    http_impl: str = field(
        default="auto",
        metadata={
            "help": "HTTP/1.1 parser of the API: httptools (C), h11 (pure Python), or auto "
            "(httptools when installed)"
        },
    )
    event_loop: str = field(
        default="auto",
        metadata={
            "help": "the tokenizer's asyncio loop: uvloop, asyncio, or auto (uvloop when installed)"
        },
    )

    def __post_init__(self) -> None:
        if self.api_key and self.api_key_file:
            raise ValueError("api_key and api_key_file: set one, not both")

    def with_api_key(self) -> TokenizerConfig:
        """This config with ``api_key`` read from ``api_key_file`` when one is given (fails
        at start-up on a missing or empty file)."""
        if not self.api_key_file:
            return self
        try:
            with open(self.api_key_file, encoding="utf-8") as f:
                key = f.read().strip()
        except OSError as exc:
            raise ValueError(f"api_key_file: cannot read {self.api_key_file!r}: {exc}") from exc
        if not key:
            raise ValueError(f"api_key_file: {self.api_key_file!r} is empty")
        return dataclasses.replace(self, api_key=key, api_key_file="")
