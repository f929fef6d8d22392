"""``python -m services.tokenizer``: serve TokenizerService and the OpenAI HTTP API."""

from __future__ import annotations

from services.common.server import run_service
from services.tokenizer.config import TokenizerConfig
from services.tokenizer.server import start_tokenizer


def main() -> None:
    run_service("tokenizer", TokenizerConfig, start_tokenizer)


if __name__ == "__main__":
    main()
