"""Benchmark requests: prompt token ids and the exact number of tokens to generate.

Prompts are token ids, sent as such (``prompt: [ids]`` on ``/v1/completions``, ``token_ids`` on
gRPC), so that input lengths are exact without a client-side tokenizer; vLLM and SGLang accept
them too. Output lengths are exact because every request asks for ``ignore_eos``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

logger = logging.getLogger(__name__)

DATASETS = ("random", "fixed", "shared-prefix")
# Low ids are the specials of most vocabularies (<unk>, <s>, </s>, ...): keep prompts off them.
FIRST_ID = 10


@dataclass(frozen=True)
class BenchRequest:
    """One request of a run."""

    prompt_ids: list[int]
    output_len: int
    prompt_text: str | None = None  # sent instead of the ids when set (``--tokenizer``)

    @property
    def input_len(self) -> int:
        return len(self.prompt_ids)


def as_text(reqs: list[BenchRequest], decode: Callable[[list[int]], str]) -> list[BenchRequest]:
    """The same requests with text prompts: each prompt's ids decoded by the model's tokenizer.

    For servers that take only text. The server re-tokenizes, so input lengths are exact only
    where decoding and encoding round-trip (the dummy models' stand-in vocabulary does); the
    reported input tokens are the server's count.
    """
    return [replace(r, prompt_text=decode(r.prompt_ids)) for r in reqs]


def _ids(rng: random.Random, n: int, vocab_size: int) -> list[int]:
    return [rng.randrange(FIRST_ID, vocab_size) for _ in range(n)]


def _uniform(rng: random.Random, length: int, ratio: float) -> int:
    """SGLang's ``random`` semantics: an integer in [ratio * length, length], at least 1."""
    return max(1, rng.randint(int(length * ratio), length))


def random_requests(
    n: int, input_len: int, output_len: int, ratio: float, vocab_size: int, seed: int = 0
) -> list[BenchRequest]:
    """Input lengths U[r*L_in, L_in], output lengths U[r*L_out, L_out], random ids."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"random_range_ratio must be in [0, 1], got {ratio}")
    rng = random.Random(seed)
    reqs = []
    for _ in range(n):
        lin, lout = _uniform(rng, input_len, ratio), _uniform(rng, output_len, ratio)
        reqs.append(BenchRequest(_ids(rng, lin, vocab_size), lout))
    return reqs


def fixed_requests(
    n: int, input_len: int, output_len: int, vocab_size: int, seed: int = 0
) -> list[BenchRequest]:
    """Every request exactly ``input_len`` in and ``output_len`` out (different random ids)."""
    return random_requests(n, input_len, output_len, 1.0, vocab_size, seed)


def shared_prefix_requests(
    groups: int,
    per_group: int,
    system_len: int,
    question_len: int,
    output_len: int,
    vocab_size: int,
    seed: int = 0,
) -> list[BenchRequest]:
    """``groups`` long system prompts, each followed by ``per_group`` short questions.

    Requests are shuffled so that a group's members arrive interleaved with other groups, as
    they would from many users; a prefix cache should serve all but the first of each group.
    """
    rng = random.Random(seed)
    reqs = []
    for _ in range(groups):
        system = _ids(rng, system_len, vocab_size)
        for _ in range(per_group):
            reqs.append(BenchRequest(system + _ids(rng, question_len, vocab_size), output_len))
    rng.shuffle(reqs)
    return reqs
