"""Request state kept by the scheduler core, and the checks a request must pass to run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from radixserve.common.outputs import FinishReason
from radixserve.common.types import ModelInfo, SamplingParams

if TYPE_CHECKING:
    from radixserve.scheduler.radix_cache import TreeNode

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Request:
    """One generation request and its scheduling state.

    KV layout: positions ``[0, kv_len)`` of the request's row hold the slots in ``slots``; the
    first ``cache_len`` of them belong to the radix cache (locked through ``last_node``), the rest
    are owned by the request. The KV of the last sampled token is not computed yet (the next
    decode step writes it), so a decoding request has ``kv_len == seq_len - 1`` once all results
    are in.
    """

    rid: str
    input_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    eos_token_ids: tuple[int, ...] | None = None  # None: the model's EOS ids
    priority: int = 0  # larger runs first under the ``priority`` policy
    extra_key: str | None = None  # radix-cache namespace (LoRA id, cache salt)
    arrival: float = field(default_factory=time.monotonic)

    output_ids: list[int] = field(default_factory=list)
    output_logprobs: list[float] = field(default_factory=list)
    row: int = -1
    slots: list[int] = field(default_factory=list)
    cache_len: int = 0
    last_node: TreeNode | None = None
    prefill_target: int = 0  # kv_len at which the (re-)prefill is complete
    fresh_row: bool = False  # next ReqInput must carry prefix_slots and sampling
    pending_samples: int = 0  # steps in flight that will sample a token for this request
    version: int = 0  # bumped on retraction: results of older steps are discarded
    cached_tokens: int = 0  # radix-cache hit at first admission (reported in usage)
    num_retractions: int = 0
    stop_set: frozenset[int] = frozenset()  # filled by the scheduler from stop_ids()
    finish_reason: FinishReason | None = None

    @property
    def prompt_len(self) -> int:
        return len(self.input_ids)

    @property
    def num_output(self) -> int:
        return len(self.output_ids)

    @property
    def seq_len(self) -> int:
        return len(self.input_ids) + len(self.output_ids)

    @property
    def all_ids(self) -> list[int]:
        return self.input_ids + self.output_ids

    @property
    def kv_len(self) -> int:
        return len(self.slots)

    @property
    def max_new_tokens(self) -> int:
        return self.sampling.max_new_tokens

    @property
    def scheduled_outputs(self) -> int:
        """Tokens sampled so far plus those that steps in flight will sample."""
        return len(self.output_ids) + self.pending_samples

    @property
    def remaining_new_tokens(self) -> int:
        return max(0, self.sampling.max_new_tokens - self.scheduled_outputs)

    @property
    def is_running(self) -> bool:
        return self.row >= 0

    @property
    def prefilling(self) -> bool:
        return self.kv_len < self.prefill_target

    @property
    def remaining_prefill(self) -> int:
        return max(0, self.prefill_target - self.kv_len)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def stop_ids(self, model_eos: tuple[int, ...]) -> frozenset[int]:
        """Token ids that finish this request: stop_token_ids, plus EOS unless ignore_eos.

        Under a grammar EOS always finishes: with ignore_eos the worker allows EOS only once the
        grammar can only end, so an EOS there means the grammar is complete (without this, such a
        request would emit EOS until max_new_tokens).
        """
        eos = model_eos if self.eos_token_ids is None else self.eos_token_ids
        ids = set(self.sampling.stop_token_ids)
        if not self.sampling.ignore_eos or self.sampling.constraint is not None:
            ids.update(eos)
        return frozenset(ids)


def peak_kv_len(prompt_len: int, max_new_tokens: int) -> int:
    """KV positions a request holds at most: the last sampled token's KV is never computed."""
    return prompt_len + max_new_tokens - 1


def validate_request(req: Request, info: ModelInfo, kv_capacity: int, page_size: int) -> None:
    """Raise ValueError naming the field when ``req`` can never run on this model.

    NOTE: a request that passes fits the KV pool alone (whole pages included), so a request
    running alone never runs out of slots; see Admission.chunk_size and Scheduler._make_room.
    """
    n, max_new, ctx = req.prompt_len, req.max_new_tokens, info.max_context_len
    if n == 0:
        raise ValueError("input_ids: empty prompt")
    if min(req.input_ids) < 0 or max(req.input_ids) >= info.vocab_size > 0:
        raise ValueError(f"input_ids: token ids must lie in [0, {info.vocab_size})")
    if max_new < 1:
        raise ValueError(f"max_new_tokens: must be >= 1, got {max_new}")
    if n >= ctx:
        raise ValueError(f"input_ids: {n} tokens, max_context_len is {ctx}")
    if n + max_new > ctx:
        raise ValueError(
            f"max_new_tokens: {n} prompt tokens + {max_new} exceeds max_context_len {ctx}"
        )
    if whole_pages(n, page_size) > kv_capacity:
        raise ValueError(f"input_ids: {n} tokens exceed the KV capacity {kv_capacity}")
    if whole_pages(peak_kv_len(n, max_new), page_size) > kv_capacity:
        raise ValueError(
            f"max_new_tokens: {n} prompt tokens + {max_new} new tokens need "
            f"{peak_kv_len(n, max_new)} KV slots, the KV capacity is {kv_capacity}"
        )


def whole_pages(n: int, page_size: int) -> int:
    """``n`` positions rounded up to whole pages, in slots."""
    return -(-n // page_size) * page_size
