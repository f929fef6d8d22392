"""``python -m services.tokenizer``: serve TokenizerService and the OpenAI HTTP API."""

from __future__ import annotations

import asyncio
import sys

from services.common.config import parse_config
from services.common.logs import setup_logging
from services.common.server import install_stop_signals
from services.tokenizer.config import TokenizerConfig
from services.tokenizer.server import start_tokenizer


async def amain(argv: list[str]) -> None:
    cfg = parse_config(TokenizerConfig, argv, prog="python -m services.tokenizer")
    stop = asyncio.Event()
    install_stop_signals(stop)
    running = await start_tokenizer(cfg)
    await stop.wait()
    await running.stop()


def main() -> None:
    setup_logging("tokenizer")
    asyncio.run(amain(sys.argv[1:]))


if __name__ == "__main__":
    main()
