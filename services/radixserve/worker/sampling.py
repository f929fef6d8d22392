"""Greedy and temperature / top-k / top-p sampling, batched, with per-request seeds.

Random rows draw exponential noise and take ``argmax(probs / noise)`` (the Gumbel-max trick in
exponential form, equivalent to sampling from ``probs``). Rows with a seed draw their noise from
their own ``torch.Generator`` so their tokens do not depend on what else is in the batch; the
others share the sampler's generator. Logprobs (of the chosen token and the top-k) are of the
model's raw distribution (``log_softmax`` of the logits before penalties, min_new_tokens masking,
temperature, top-k and top-p); the runner passes those as ``raw``. Min-p drops tokens less likely
than ``min_p`` times the row's most likely one (after temperature), as vLLM and SGLang do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from radixserve.common.types import SamplingParams, TopLogprobs

logger = logging.getLogger(__name__)


class Sampler:
    def __init__(self, device: torch.device, seed: int = 0) -> None:
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    @torch.inference_mode()
    def sample(
        self,
        logits: torch.Tensor,
        params: Sequence[SamplingParams],
        generators: Sequence[torch.Generator | None],
        raw: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token ids ``[S]`` (int64) and, when any row asks, their logprobs ``[S]`` (float32).

        ``logits`` decide the tokens; logprobs come from ``raw`` (default: ``logits``).
        """
        logits = logits.float()
        greedy = [p.greedy for p in params]
        if all(greedy):
            ids = logits.argmax(dim=-1)
        else:
            ids = self._random(logits, params, generators)
            if any(greedy):
                mask = torch.tensor(greedy, device=logits.device)
                ids = torch.where(mask, logits.argmax(dim=-1), ids)
        logprobs = None
        if any(p.logprobs for p in params):
            source = logits if raw is None else raw.float()
            logprobs = torch.log_softmax(source, dim=-1).gather(1, ids[:, None]).squeeze(1)
        return ids, logprobs

    @torch.inference_mode()
    def top_logprobs(self, raw: torch.Tensor, ks: Sequence[int]) -> list[TopLogprobs | None]:
        """The ``ks[i]`` most likely tokens of row i of ``raw`` ``[S, V]``; None where 0."""
        k = min(max(ks), raw.shape[-1])
        values, ids = torch.log_softmax(raw.float(), dim=-1).topk(k, dim=-1)
        values_list, ids_list = values.tolist(), ids.tolist()
        return [
            TopLogprobs(tuple(ids_list[i][:ki]), tuple(values_list[i][:ki])) if ki > 0 else None
            for i, ki in enumerate(ks)
        ]

    def _random(
        self,
        logits: torch.Tensor,
        params: Sequence[SamplingParams],
        generators: Sequence[torch.Generator | None],
    ) -> torch.Tensor:
        temps = [p.temperature if not p.greedy else 1.0 for p in params]
        scaled = logits / torch.tensor(temps, device=logits.device)[:, None]
        if any(p.min_p > 0.0 for p in params):
            scaled = _min_p(scaled, [p.min_p for p in params])
        vocab = logits.shape[-1]
        top_k = [p.top_k if 0 < p.top_k < vocab else vocab for p in params]
        top_p = [p.top_p for p in params]
        if any(k < vocab for k in top_k) or any(p < 1.0 for p in top_p):
            sorted_logits, order = scaled.sort(dim=-1, descending=True)
            probs = _filtered_probs(sorted_logits, top_k, top_p)
            return order.gather(1, self._draw(probs, generators)[:, None]).squeeze(1)
        return self._draw(torch.softmax(scaled, dim=-1), generators)

    def _draw(
        self, probs: torch.Tensor, generators: Sequence[torch.Generator | None]
    ) -> torch.Tensor:
        noise = torch.empty_like(probs)
        noise.exponential_(generator=self.generator)
        for i, gen in enumerate(generators):
            if gen is not None:
                noise[i].exponential_(generator=gen)
        return (probs / noise).argmax(dim=-1)


def _min_p(scaled: torch.Tensor, min_p: list[float]) -> torch.Tensor:
    """Drops tokens whose probability is below ``min_p`` times their row's top probability.

    In logit space (no softmax): ``p_t < m * p_max`` iff ``logit_t < logit_max + log(m)``.
    """
    threshold = torch.tensor(min_p, device=scaled.device, dtype=scaled.dtype).log()[:, None]
    cut = scaled.max(dim=-1, keepdim=True).values + threshold  # log(0) = -inf keeps every token
    return scaled.masked_fill(scaled < cut, float("-inf"))


def _filtered_probs(
    sorted_logits: torch.Tensor, top_k: list[int], top_p: list[float]
) -> torch.Tensor:
    """Probabilities over descending-sorted logits with top-k and top-p tails removed."""
    dev = sorted_logits.device
    ranks = torch.arange(sorted_logits.shape[-1], device=dev)[None, :]
    drop = ranks >= torch.tensor(top_k, device=dev)[:, None]
    probs = torch.softmax(sorted_logits, dim=-1)
    # NOTE: the mass *before* a token decides, so the most likely token always survives.
    before = probs.cumsum(dim=-1) - probs
    drop |= before > torch.tensor(top_p, device=dev)[:, None]
    probs = probs.masked_fill(drop, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True)
