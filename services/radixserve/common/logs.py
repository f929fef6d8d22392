"""Structured, quiet-by-default logging: one ``key=value`` line per event.

``RADIXSERVE_LOG_LEVEL`` (default ``INFO``) sets the level; ``RADIXSERVE_LOG_FORMAT=json`` switches
to one JSON object per line. Extra fields go through ``logger.info("msg", extra={"kv": {...}})``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time


class _Formatter(logging.Formatter):
    def __init__(self, service: str, as_json: bool) -> None:
        super().__init__()
        self.service = service
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "kv", {}) or {})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(fields, default=str)
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return json.dumps(text)
    return text


def setup_logging(service: str, level: str | None = None) -> None:
    """Configures the root logger for one service process."""
    level = (level or os.environ.get("RADIXSERVE_LOG_LEVEL", "INFO")).upper()
    as_json = os.environ.get("RADIXSERVE_LOG_FORMAT", "").lower() == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(service, as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party libraries are noisy at INFO.
    for name in ("uvicorn.access", "httpx", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)
