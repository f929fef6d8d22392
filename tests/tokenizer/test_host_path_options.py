"""--http-impl and --event-loop: known names only, and auto falls back when a package is missing."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from radixserve.common.server import loop_factory
from radixserve.tokenizer.config import TokenizerConfig
from radixserve.tokenizer.openai.http_server import http_protocol

HAVE_HTTPTOOLS = importlib.util.find_spec("httptools") is not None
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_http_impl_names() -> None:
    assert TokenizerConfig().http_impl == "auto"
    assert http_protocol("h11") == "h11"
    assert http_protocol("auto") == ("httptools" if HAVE_HTTPTOOLS else "h11")
    if HAVE_HTTPTOOLS:
        assert http_protocol("httptools") == "httptools"
    else:
        with pytest.raises(ValueError, match="http_impl: httptools is not installed"):
            http_protocol("httptools")
    with pytest.raises(ValueError, match="http_impl: unknown 'h2'.*auto, httptools, h11"):
        http_protocol("h2")


def test_event_loop_names() -> None:
    assert TokenizerConfig().event_loop == "auto"
    assert loop_factory("asyncio") is None
    factory = loop_factory("auto")
    if HAVE_UVLOOP:
        loop = factory()
        try:
            assert type(loop).__module__.startswith("uvloop")
            assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
        finally:
            loop.close()
    else:
        assert factory is None
        with pytest.raises(ValueError, match="event_loop: uvloop is not installed"):
            loop_factory("uvloop")
    with pytest.raises(ValueError, match="event_loop: unknown 'trio'"):
        loop_factory("trio")
