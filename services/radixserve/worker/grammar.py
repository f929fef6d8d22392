"""Structured output and logit bias: per-row logit edits on the device, only for rows that ask.

The worker samples, so the grammar matchers live here, one per constrained row (the scheduler
owns no tensors and never sees a grammar's state). The engine is llguidance:

* a request's :class:`Constraint` is compiled once per key (kind, text) into a grammar string,
  on a thread pool, started the step the row first appears, so compilation overlaps that step's
  forward and never holds up another row's step; the step that samples the row waits for it;
* before sampling, each constrained row gets one row of a CPU int32 bitmask (bit ``t`` set =
  token ``t`` allowed, ``grammar_masks.py``); the bitmask goes to the device in one copy and is
  applied to the logits there (:func:`apply_token_bitmask`);
* right after sampling, each matcher consumes the token its row sampled, so the next step's mask
  follows it. By default that happens on a background thread, which then fills the next step's
  masks while the step thread answers and launches the next forward (``grammar_overlap``; see
  ``grammar_masks``). The scheduler runs one step ahead, but the worker handles steps in order,
  so a matcher is always advanced before its next mask is used.

A row whose request ended (stop token sampled, or the matcher stopped) may still be sampled once
more by the overlapped next step: it gets a mask that allows only its stop tokens.

:attr:`RowConstraints.active` counts live rows with a grammar or a logit bias; at zero a step
does no work here at all (unconstrained batches keep today's path and CUDA graphs).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from radixserve.common.grammars import grammar_text
from radixserve.common.model_source import ModelSource
from radixserve.common.types import Constraint, SamplingParams
from radixserve.worker.grammar_masks import GrammarState, MaskBuilder, MaskStats

logger = logging.getLogger(__name__)

_COMPILE_THREADS = 2


def apply_token_bitmask(logits: torch.Tensor, rows: torch.Tensor, bitmask: torch.Tensor) -> None:
    """``logits[rows[i], t] = -inf`` where bit ``t`` of ``bitmask[i]`` is 0, in place.

    logits ``[S, V]`` float, rows ``[n]`` int64, bitmask ``[n, ceil(V / 32)]`` int32, all on the
    logits' device: the unpacking runs there, no per-token host work.
    """
    vocab = logits.shape[-1]
    shifts = torch.arange(32, device=logits.device, dtype=torch.int32)
    bits = (bitmask[:, :, None] >> shifts) & 1
    allowed = bits.view(bitmask.shape[0], -1)[:, :vocab].bool()
    logits[rows] = logits[rows].masked_fill(~allowed, float("-inf"))


@dataclass
class _Row:
    sampling: SamplingParams
    grammar: GrammarState | None = None
    prompt_len: int = 0  # 0: not told, nothing is replayed
    bias_ids: list[int] = field(default_factory=list)
    bias_values: list[float] = field(default_factory=list)


class RowConstraints:
    """Grammar matchers and logit biases of the live rows (see the module docstring)."""

    def __init__(
        self,
        vocab_size: int,
        device: torch.device,
        source: ModelSource,
        eos_ids: Sequence[int],
        overlap: bool = True,
    ) -> None:
        self.vocab_size = vocab_size
        self.device = device
        self.source = source
        self.eos_ids = tuple(eos_ids)
        self._rows: dict[int, _Row] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._tokenizer = None  # llguidance.LLTokenizer, loaded with the first grammar
        self._tokenizer_lock = threading.Lock()
        self._pin = device.type == "cuda"
        self.masks = MaskBuilder(
            vocab_size, self._pin, self.eos_ids, lambda: self._ll_tokenizer().eos_tokens, overlap
        )

    @property
    def active(self) -> int:
        """Live rows with a grammar or a logit bias."""
        return len(self._rows)

    @property
    def stats(self) -> MaskStats:
        return self.masks.stats

    def start(self, row: int, sampling: SamplingParams, prompt_len: int = 0) -> None:
        """Registers a new row; starts compiling its grammar in the background."""
        self.release(row)
        if sampling.constraint is None and not sampling.logit_bias:
            return
        state = _Row(sampling, prompt_len=prompt_len)
        for token_id, bias in sampling.logit_bias:
            if token_id < self.vocab_size:
                state.bias_ids.append(token_id)
                state.bias_values.append(bias)
        if sampling.constraint is not None:
            own = tuple(dict.fromkeys(sampling.stop_token_ids))
            state.grammar = GrammarState(
                self._pool_().submit(self._new_matcher, sampling.constraint),
                stop_ids=tuple(dict.fromkeys((*own, *self.eos_ids))),
                own_stops=own,
                ignore_eos=sampling.ignore_eos,
            )
        self._rows[row] = state

    def extend(
        self, row: int, start: int, prefix_ids: Sequence[int] | None, ids: Sequence[int]
    ) -> None:
        """New input ids of a row at positions ``start...``: output re-prefilled after a
        retraction (positions past the prompt) is replayed into the row's matcher."""
        state = self._rows.get(row)
        if state is None or state.grammar is None or not state.prompt_len:
            return
        prompt_len, replay = state.prompt_len, state.grammar.replay
        if prefix_ids:
            replay += list(prefix_ids[prompt_len:])
        replay += list(ids[max(0, prompt_len - start) :])

    def release(self, row: int) -> None:
        self._rows.pop(row, None)

    def clear(self) -> None:
        """Forgets every row (a new session); a failed mask job of the old one is only logged."""
        try:
            self.masks.wait()
        except Exception:  # noqa: BLE001 - its rows are gone with the session
            logger.exception("grammar mask job of the previous session failed")
        self._rows.clear()

    def apply(self, logits: torch.Tensor, rows: Sequence[int]) -> None:
        """Adds biases and masks grammars on ``logits[j]`` (row ``rows[j]``), in place."""
        picked = [(j, self._rows[r]) for j, r in enumerate(rows) if r in self._rows]
        biased = [(j, s) for j, s in picked if s.bias_ids]
        if biased:
            self._add_bias(logits, biased)
        constrained = [(j, s.grammar) for j, s in picked if s.grammar is not None]
        if constrained:
            self._mask(logits, constrained)

    def advance(self, rows: Sequence[int], ids: Sequence[int]) -> None:
        """Each constrained row's matcher consumes the token the row sampled (on the mask
        thread with the overlap, which then fills these rows' next masks)."""
        pairs = []
        for r, token in zip(rows, ids, strict=True):
            state = self._rows.get(r)
            if state is not None and state.grammar is not None:
                pairs.append((state.grammar, token))
        self.masks.after_sampling(pairs)

    # ---- internals -----------------------------------------------------------------------

    def _add_bias(self, logits: torch.Tensor, biased: list[tuple[int, _Row]]) -> None:
        rows = [j for j, s in biased for _ in s.bias_ids]
        ids = [t for _, s in biased for t in s.bias_ids]
        values = [v for _, s in biased for v in s.bias_values]
        index = torch.tensor([rows, ids], dtype=torch.int64).to(self.device)
        bias = torch.tensor(values, dtype=logits.dtype).to(self.device)
        logits.index_put_((index[0], index[1]), bias, accumulate=True)

    def _mask(self, logits: torch.Tensor, constrained: list[tuple[int, GrammarState]]) -> None:
        host, order = self.masks.masks([g for _, g in constrained])
        rows = torch.tensor([constrained[k][0] for k in order], pin_memory=self._pin)
        # NOTE: non_blocking from pinned memory; the host buffer is written again only after
        # this step's sampled ids were read back (a sync), so the copies are done by then.
        device_mask = host.to(self.device, non_blocking=True)
        apply_token_bitmask(logits, rows.to(self.device, non_blocking=True), device_mask)

    def _pool_(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                _COMPILE_THREADS, thread_name_prefix="grammar"
            )
        return self._pool

    def _new_matcher(self, constraint: Constraint):  # noqa: ANN202 - llguidance.LLMatcher
        import llguidance

        try:
            text = grammar_text(constraint.kind, constraint.value)
        except ValueError as exc:
            logger.warning("invalid grammar reached the worker: %s", exc)
            text = llguidance.grammar_from("regex", "")  # ends the row at once
        return llguidance.LLMatcher(self._ll_tokenizer(), text)

    def _ll_tokenizer(self):  # noqa: ANN202 - llguidance.LLTokenizer
        # NOTE: runs on a pool thread; loading here (not as another pool task, which the busy
        # pool threads would wait on forever) under a lock, so the vocabulary loads once.
        with self._tokenizer_lock:
            if self._tokenizer is None:
                self._tokenizer = load_ll_tokenizer(self.source, self.vocab_size, self.eos_ids)
            return self._tokenizer


def load_ll_tokenizer(source: ModelSource, vocab_size: int, eos_ids: Sequence[int]):  # noqa: ANN201
    """An llguidance tokenizer for the model's vocabulary, sized to the LM head."""
    import llguidance

    from radixserve.common.vocab.loading import load_tokenizer

    tok = load_tokenizer(source)
    eos = list(dict.fromkeys([*eos_ids, *tok.eos_token_ids])) or [0]
    backend = getattr(tok, "backend", None)
    if backend is not None:  # a Hugging Face tokenizers vocabulary: llguidance reads it whole
        return llguidance.LLTokenizer(backend.to_str(), n_vocab=vocab_size, eos_token=eos)
    wrapper = llguidance.TokenizerWrapper(_Vocab(tok, vocab_size, eos[0]))
    return llguidance.LLTokenizer(wrapper, n_vocab=vocab_size, eos_token=eos)


class _Vocab:
    """What llguidance's TokenizerWrapper reads: token bytes, eos/bos and a tokenize call."""

    def __init__(self, tok, vocab_size: int, eos: int) -> None:  # noqa: ANN001
        from radixserve.common.vocab.token_bytes import token_bytes

        self._tok = tok
        self.eos_token_id = eos
        self.bos_token_id = tok.bos_token_id
        self.tokens = token_bytes(tok, range(vocab_size))
        self.special_token_ids = sorted(tok.special_token_ids)

    def __call__(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False)
