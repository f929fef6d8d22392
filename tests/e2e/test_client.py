"""The SDK (sync and asyncio) and the ``radixserve`` CLI against the running stack."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from radixserve.client.sdk import AsyncRadixClient, RadixClient
from tests.e2e.conftest import wait_for
from tests.stack import Stack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUESTION = "What is the capital of France?"


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "radixserve.client",
        "--address",
        stack.tokenizer_address,
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_chat(stack: Stack) -> None:
    out = cli(stack, "--chat", QUESTION, "--temperature", "0", "--max-tokens", "16", "--usage")
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    assert json.loads(out.stderr.strip().splitlines()[-1])["completion_tokens"] > 0


def test_cli_info_tokenize_and_errors(stack: Stack) -> None:
    info = cli(stack, "info")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["max_context_len"] > 0
    ids = cli(stack, "tokenize", "Hello world")
    assert ids.returncode == 0 and len(json.loads(ids.stdout)) >= 2
    bad = cli(stack, "Hello", "--temperature", "-1")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "temperature" in bad.stderr


def test_sdk_sync(stack: Stack, idle: Callable[[], bool]) -> None:
    with RadixClient(stack.tokenizer_address) as client:
        chunks = list(client.generate("The capital of France is", max_tokens=6, temperature=0))
        assert chunks[-1].finish_reason in ("stop", "length")
        assert chunks[-1].completion_tokens == sum(len(c.token_ids) for c in chunks)
        done = client.complete("The capital of France is", max_tokens=6, temperature=0)
        assert done.text == "".join(c.text for c in chunks) and "Paris" in done.text
        answer = client.chat([{"role": "user", "content": QUESTION}], max_tokens=16, temperature=0)
        assert "Paris" in answer.text and answer.prompt_tokens > 0
        ids = client.tokenize("Hello world")
        assert client.detokenize(ids, skip_special_tokens=True).strip() == "Hello world"
        assert client.model_info().info.vocab_size > 0
        assert client.abort("no-such-request") is False
        by_ids = client.complete(done.token_ids[:2], max_tokens=2, temperature=0)
        assert by_ids.completion_tokens == 2
        stream = client.generate("Count: 1, 2,", max_tokens=500, ignore_eos=True)
        next(stream)
        stream.close()  # leaving early cancels the call, which aborts the request
    assert wait_for(idle)


def test_sdk_async(stack: Stack) -> None:
    async def run() -> tuple[str, str, int]:
        async with AsyncRadixClient(stack.tokenizer_address) as client:
            text = ""
            async for chunk in client.generate(
                messages=[{"role": "user", "content": QUESTION}], max_tokens=16, temperature=0
            ):
                text += chunk.text
            done = await client.complete("The capital of France is", max_tokens=4, temperature=0)
            return text, done.finish_reason or "", len(await client.tokenize("Hello"))

    text, finish, n_ids = asyncio.run(run())
    assert "Paris" in text and finish in ("stop", "length") and n_ids >= 1


def test_sdk_rejects_bad_arguments(stack: Stack) -> None:
    with RadixClient(stack.tokenizer_address) as client:
        with pytest.raises(TypeError, match="frequency"):
            client.complete("x", frequency=1)
        with pytest.raises(ValueError, match="exactly one"):
            client.complete("x", messages=[])


def test_sdk_samples_and_sampling_extensions(stack: Stack) -> None:
    with RadixClient(stack.tokenizer_address) as rc:
        chunks = list(
            rc.generate(
                "Pick a colour:",
                n=2,
                seed=3,
                temperature=1.0,
                max_tokens=6,
                min_tokens=6,
                frequency_penalty=0.5,
                logprobs=True,
                top_logprobs=2,
            )
        )
    by_index: dict[int, list] = {}
    for chunk in chunks:
        by_index.setdefault(chunk.index, []).append(chunk)
    assert sorted(by_index) == [0, 1]
    for parts in by_index.values():
        assert sum(len(c.token_ids) for c in parts) == 6
        assert parts[-1].finish_reason == "length"
        assert len([lp for c in parts for lp in c.logprobs]) == 6
