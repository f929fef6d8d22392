"""``radixserve`` / ``python -m radixserve.client``: talk to a tokenizer service.

    radixserve "Once upon a time" --max-tokens 32
    radixserve --chat "What is the capital of France?" --temperature 0
    radixserve info
    radixserve tokenize "Hello world"
    echo "a prompt from stdin" | radixserve -

The answer streams to stdout as it arrives; ``--usage`` prints token counts to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence

import grpc

from radixserve.client.messages import chat_messages
from radixserve.client.sdk import DEFAULT_ADDRESS, RadixClient

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="radixserve",
        description="Generate text with a radixserve tokenizer service, or run 'info' / "
        "'tokenize TEXT'. A prompt of '-' is read from stdin.",
    )
    p.add_argument("words", nargs="+", metavar="PROMPT", help="the prompt, or a command")
    p.add_argument("--address", default=DEFAULT_ADDRESS, help="tokenizer gRPC host:port")
    p.add_argument("--timeout", type=float, default=300.0, help="deadline in seconds")
    p.add_argument("--chat", action="store_true", help="send the prompt as a user message")
    p.add_argument("--system", default=None, help="system message (implies --chat)")
    p.add_argument("--max-tokens", type=int, default=None, help="most tokens to generate")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--ignore-eos", action="store_true", default=None)
    p.add_argument("--usage", action="store_true", help="print token counts to stderr")
    return p


def _sampling(args: argparse.Namespace) -> dict[str, object]:
    return {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
        "stop": args.stop,
        "ignore_eos": args.ignore_eos,
    }


def _prompt(words: Sequence[str]) -> str:
    text = " ".join(words)
    return sys.stdin.read() if text == "-" else text


def run_generate(client: RadixClient, args: argparse.Namespace) -> int:
    prompt = _prompt(args.words)
    if args.chat or args.system:
        chunks = client.generate(messages=chat_messages(prompt, args.system), **_sampling(args))
    else:
        chunks = client.generate(prompt, **_sampling(args))
    last = None
    for chunk in chunks:
        print(chunk.text, end="", flush=True)
        last = chunk
    print()
    if args.usage and last is not None:
        usage = {
            "prompt_tokens": last.prompt_tokens,
            "completion_tokens": last.completion_tokens,
            "cached_tokens": last.cached_tokens,
            "finish_reason": last.finish_reason,
        }
        print(json.dumps(usage), file=sys.stderr)
    return 0


def run_command(client: RadixClient, args: argparse.Namespace) -> int:
    command, rest = args.words[0], args.words[1:]
    if command == "info":
        served = client.model_info()
        info = dataclasses.asdict(served.info)
        print(json.dumps({**info, "has_chat_template": bool(served.chat_template)}, indent=2))
    elif command == "tokenize":
        print(json.dumps(client.tokenize(_prompt(rest))))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    head, n = args.words[0], len(args.words)
    is_command = (head == "info" and n == 1) or (head == "tokenize" and n > 1)
    try:
        with RadixClient(args.address, timeout=args.timeout) as client:
            if is_command:
                return run_command(client, args)
            return run_generate(client, args)
    except grpc.RpcError as exc:
        print(f"\nerror: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
