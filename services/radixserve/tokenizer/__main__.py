"""``python -m radixserve.tokenizer``: serve TokenizerService and the OpenAI HTTP API."""

from __future__ import annotations

from radixserve.common.server import run_service
from radixserve.tokenizer.config import TokenizerConfig
from radixserve.tokenizer.server import start_tokenizer


def main() -> None:
    run_service("tokenizer", TokenizerConfig, start_tokenizer)


if __name__ == "__main__":
    main()
