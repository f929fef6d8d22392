"""Drive a ModelRunner through steps the way the scheduler would (slots from a counter)."""

from __future__ import annotations

import itertools
import json
import os

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from radixserve.common.types import ForwardMode, ReqInput, SamplingParams, StepInput
from radixserve.worker.engine import ModelRunner

GREEDY = SamplingParams(temperature=0.0)


class Driver:
    """Hands out KV slots from a counter and step ids in order."""

    def __init__(self, runner: ModelRunner, first_slot: int = 1) -> None:
        self.runner = runner
        self._slots = itertools.count(first_slot)
        self._steps = itertools.count()

    def slots(self, n: int) -> list[int]:
        return [next(self._slots) for _ in range(n)]

    def step(self, mode: ForwardMode, reqs: list[ReqInput], release: list[int] | None = None):
        return self.runner.step(StepInput(next(self._steps), mode, reqs, release or []))

    def generate(
        self,
        prompts: list[list[int]],
        max_new: int,
        rows: list[int] | None = None,
        sampling: SamplingParams = GREEDY,
        chunk: int | None = None,
        prefixes: list[list[int] | None] | None = None,
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Prefill all prompts in one step (or in ``chunk``-sized steps), then decode together.

        Returns the generated ids and the slots of every row (prompt + generated tokens).
        """
        rows = rows or list(range(len(prompts)))
        prefixes = prefixes or [None] * len(prompts)
        row_slots = [list(p or []) for p in prefixes]
        out = self._prefill(prompts, rows, sampling, chunk, prefixes, row_slots)
        gen = [[t] for t in out]
        for _ in range(max_new - 1):
            reqs = []
            for i, row in enumerate(rows):
                s = self.slots(1)
                row_slots[i] += s
                reqs.append(ReqInput(row, s))
            res = self.step(ForwardMode.DECODE, reqs)
            for i, t in enumerate(res.token_ids):
                gen[i].append(t)
        self.step(ForwardMode.DECODE, [ReqInput(rows[0], self.slots(1))], release=rows)
        return gen, row_slots

    def _prefill(self, prompts, rows, sampling, chunk, prefixes, row_slots) -> list[int]:
        starts = [len(p or []) for p in prefixes]
        chunk = chunk or max(len(p) - s for p, s in zip(prompts, starts, strict=True))
        first, last = [True] * len(prompts), [None] * len(prompts)
        while any(s < len(p) for p, s in zip(prompts, starts, strict=True)):
            reqs, idx = [], []
            for i, (p, row) in enumerate(zip(prompts, rows, strict=True)):
                if starts[i] >= len(p):
                    continue
                ids = p[starts[i] : starts[i] + chunk]
                starts[i] += len(ids)
                s = self.slots(len(ids))
                row_slots[i] += s
                prefix, params = (prefixes[i], sampling) if first[i] else (None, None)
                reqs.append(ReqInput(row, s, ids, prefix, params, sample=starts[i] == len(p)))
                first[i] = False
                idx.append(i)
            res = self.step(ForwardMode.EXTEND, reqs)
            for i, t in zip(idx, res.token_ids, strict=True):
                last[i] = t
        return last


def hf_greedy(model: LlamaForCausalLM, prompt: list[int], max_new: int) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False,
            min_new_tokens=max_new, eos_token_id=None, pad_token_id=0,
        )  # fmt: skip
    return out[0, len(prompt) :].tolist()


def hf_greedy_batch(model: LlamaForCausalLM, prompts: list[list[int]], max_new: int):
    """Greedy generations of several prompts in one left-padded ``generate`` call."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
            min_new_tokens=max_new, eos_token_id=None, pad_token_id=0,
        )  # fmt: skip
    return out[:, width:].tolist()


def save_tiny_llama(path: str, seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A random tiny Llama saved as an HF directory (safetensors); returns the HF model."""
    kw = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, initializer_range=0.2, tie_word_embeddings=True,
    )  # fmt: skip
    kw.update(overrides)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**kw)).eval()
    model.save_pretrained(path, safe_serialization=True)
    with open(os.path.join(path, "config.json")) as f:
        assert json.load(f)["architectures"] == ["LlamaForCausalLM"]
    return model
