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
        self.logprobs: list[list[float]] = []  # per prompt, when the sampling asks for them

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
        self.logprobs = [[] for _ in prompts]
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
            self._record_logprobs(range(len(prompts)), res)
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
            done = [i for i, r in zip(idx, reqs, strict=True) if r.sample]
            self._record_logprobs(done, res, [j for j, r in enumerate(reqs) if r.sample])
        return last

    def _record_logprobs(self, prompts, res, positions=None) -> None:
        if res.logprobs is None:
            return
        positions = list(range(len(res.token_ids))) if positions is None else positions
        for i, j in zip(prompts, positions, strict=True):
            self.logprobs[i].append(res.logprobs[j])


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


_BASE = dict(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    rms_norm_eps=1e-5, initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)  # fmt: skip

# name -> (transformers config class, model class, config values that exercise the family)
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "mistral": (
        "MistralConfig", "MistralForCausalLM",
        {"head_dim": 32, "sliding_window": 8, "tie_word_embeddings": False},
    ),
    "qwen2": (  # layers 2 and 3 slide (max_window_layers), 0 and 1 are full
        "Qwen2Config", "Qwen2ForCausalLM",
        {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 2,
         "tie_word_embeddings": True},
    ),
    "qwen3": (
        "Qwen3Config", "Qwen3ForCausalLM",
        {"head_dim": 32, "tie_word_embeddings": False},
    ),
    "phi3": (  # 8 of 16 head dims rotate; LongRoPE (short factors below 64 positions)
        "Phi3Config", "Phi3ForCausalLM",
        {"partial_rotary_factor": 0.5, "sliding_window": 8, "original_max_position_embeddings": 64,
         "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.5, 2.0, 3.0],
                          "long_factor": [2.0, 3.0, 4.0, 8.0]},
         "tie_word_embeddings": False},
    ),
    "gemma2": (
        "Gemma2Config", "Gemma2ForCausalLM",
        {"head_dim": 32, "query_pre_attn_scalar": 24, "sliding_window": 8,
         "attn_logit_softcapping": 3.0, "final_logit_softcapping": 10.0,
         "tie_word_embeddings": True},
    ),
    "gemma3": (  # sliding, sliding, full, sliding; a RoPE base per layer type
        "Gemma3TextConfig", "Gemma3ForCausalLM",
        {"head_dim": 32, "query_pre_attn_scalar": 24, "sliding_window": 8,
         "layer_types": ["sliding_attention", "sliding_attention", "full_attention",
                         "sliding_attention"],
         "rope_parameters": {
             "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
             "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
         },
         "tie_word_embeddings": False},
    ),
}  # fmt: skip


def save_tiny_family(name: str, path: str, seed: int = 0, **overrides):
    """A random tiny model of family ``name`` (see FAMILIES) saved as an HF directory; returns
    the transformers model (eager attention, float32). Norm weights are random too, so a norm
    applied in the wrong place shows."""
    import transformers

    cfg_cls, model_cls, kw = FAMILIES[name]
    config = getattr(transformers, cfg_cls)(**{**_BASE, **kw, **overrides})
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.normal_(0.0, 0.3).add_(1.0 if cfg_cls[:5] not in ("Gemma",) else 0.0)
    model.set_attn_implementation("eager")
    model.save_pretrained(path, safe_serialization=True)
    with open(os.path.join(path, "config.json")) as f:
        assert json.load(f)["architectures"] == [model_cls]
    return model
