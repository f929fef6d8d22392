"""Device-side logit edits: grammar bitmask, min_p and logit_bias (CPU here, GPU when marked)."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from radixserve.common.model_source import ModelSource
from radixserve.common.types import Constraint, SamplingParams
from radixserve.common.vocab.char_vocab import CharTokenizer
from radixserve.worker.grammar import RowConstraints, apply_token_bitmask
from radixserve.worker.sampling import Sampler


def _char_id(ch: str) -> int:
    """The dummy vocabulary's id of ``ch`` (a dummy model's stand-in: one character per id)."""
    return CharTokenizer(300).encode(ch, add_special_tokens=False)[0]


def _bitmask(allowed: list[list[int]], vocab: int) -> torch.Tensor:
    words = (vocab + 31) // 32
    out = torch.zeros((len(allowed), words), dtype=torch.int64)
    for i, ids in enumerate(allowed):
        for t in ids:
            out[i, t // 32] |= 1 << (t % 32)
    return torch.where(out >= 2**31, out - 2**32, out).to(torch.int32)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_bitmask_masks_only_its_rows(device: str) -> None:
    vocab = 70  # not a multiple of 32; bit 31 (the sign bit) used
    logits = torch.randn(3, vocab, device=device)
    before = logits.clone()
    mask = _bitmask([[0, 31, 69], [5]], vocab).to(device)
    apply_token_bitmask(logits, torch.tensor([0, 2], device=device), mask)
    assert torch.equal(logits[1], before[1])
    assert torch.isfinite(logits[0]).nonzero().flatten().tolist() == [0, 31, 69]
    assert torch.isfinite(logits[2]).nonzero().flatten().tolist() == [5]


def test_min_p_keeps_only_likely_tokens() -> None:
    sampler = Sampler(torch.device("cpu"), seed=0)
    logits = torch.tensor([[0.0, -0.1, -5.0, -6.0]]).repeat(200, 1)
    params = [SamplingParams(temperature=1.0, min_p=0.5)] * 200
    ids, _ = sampler.sample(logits, params, [None] * 200)
    assert set(ids.tolist()) <= {0, 1} and len(set(ids.tolist())) == 2


def test_logit_bias_and_grammar_rows(tmp_path: object) -> None:
    # A dummy source: one printable character per id, no files needed.
    with tempfile.TemporaryDirectory() as d:
        config = os.path.join(d, "config.json")
        with open(config, "w") as f:
            f.write('{"vocab_size": 300}')
        rows = RowConstraints(300, torch.device("cpu"), ModelSource("dummy", config, "x"), (2,))
        rows.start(0, SamplingParams(logit_bias=((7, 100.0),)))
        rows.start(1, SamplingParams(constraint=Constraint("regex", "ab")))
        assert rows.active == 2
        out = []
        for _ in range(3):
            logits = torch.zeros(2, 300)
            rows.apply(logits, [0, 1])
            assert int(logits[0].argmax()) == 7
            token = int(logits[1].argmax())
            out.append(token)
            rows.advance([0, 1], [7, token])
        assert out == [_char_id("a"), _char_id("b"), 2]  # then only the stop token is allowed
        rows.release(0)
        rows.release(1)
        assert rows.active == 0


def test_retracted_output_is_replayed(tmp_path) -> None:  # noqa: ANN001
    config = tmp_path / "config.json"
    config.write_text('{"vocab_size": 300}')
    rows = RowConstraints(300, torch.device("cpu"), ModelSource("dummy", str(config), "x"), (2,))
    # Prompt of 4 tokens, then "a" was generated before a retraction; the re-prefill brings
    # the prompt's first 2 ids as a cached prefix and the rest as new tokens.
    rows.start(1, SamplingParams(constraint=Constraint("regex", "abc")), prompt_len=4)
    rows.extend(1, 2, [9, 9], [9, 9, _char_id("a")])
    logits = torch.zeros(1, 300)
    rows.apply(logits, [1])
    assert int(logits[0].argmax()) == _char_id("b")


@pytest.mark.timeout(60)
def test_many_grammars_compile_at_once(tmp_path) -> None:  # noqa: ANN001
    """More rows than compile threads, all new in one step: no deadlock on the vocabulary."""
    config = tmp_path / "config.json"
    config.write_text('{"vocab_size": 300}')
    rows = RowConstraints(300, torch.device("cpu"), ModelSource("dummy", str(config), "x"), (2,))
    for r in range(6):
        rows.start(r, SamplingParams(constraint=Constraint("choice", f'["x{r}"]')))
    logits = torch.zeros(6, 300)
    rows.apply(logits, list(range(6)))
    assert logits.argmax(dim=-1).tolist() == [_char_id("x")] * 6


@pytest.mark.parametrize("overlap", [True, False])
def test_ignore_eos_masks_eos_until_the_grammar_can_only_end(tmp_path, overlap: bool) -> None:  # noqa: ANN001
    config = tmp_path / "config.json"
    config.write_text('{"vocab_size": 300}')
    rows = RowConstraints(
        300, torch.device("cpu"), ModelSource("dummy", str(config), "x"), (2,), overlap
    )
    a, b, eos, stop = _char_id("a"), _char_id("b"), 2, 7
    rows.start(0, SamplingParams(constraint=Constraint("regex", "a+"), ignore_eos=True))
    rows.start(1, SamplingParams(constraint=Constraint("regex", "a+")))
    rows.start(
        2,
        SamplingParams(constraint=Constraint("regex", "a+"), ignore_eos=True, stop_token_ids=(7,)),
    )
    rows.start(3, SamplingParams(constraint=Constraint("regex", "ab"), ignore_eos=True))

    def allowed() -> list[set[int]]:
        logits = torch.zeros(4, 300)
        rows.apply(logits, [0, 1, 2, 3])
        return [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in logits]

    assert allowed() == [{a}, {a}, {a}, {a}]
    rows.advance([0, 1, 2, 3], [a, a, a, a])
    # Accepting, but "a+" can go on: ignore_eos keeps EOS out (the row's own stop id stays in).
    assert allowed() == [{a}, {a, eos}, {a, stop}, {b}]
    rows.advance([0, 1, 2, 3], [a, a, a, b])
    # "ab" is complete: the grammar can only end, so EOS is all it may sample, ignore_eos or not.
    assert allowed()[3] == {eos}
    assert rows.stats.rows_ahead == (8 if overlap else 0)


def test_masks_made_ahead_follow_their_rows(tmp_path) -> None:  # noqa: ANN001
    """A row that left between steps and a new row beside rows whose masks were made ahead:
    every mask lands on its own logits row."""
    config = tmp_path / "config.json"
    config.write_text('{"vocab_size": 300}')
    rows = RowConstraints(300, torch.device("cpu"), ModelSource("dummy", str(config), "x"), (2,))
    a, b, c, d = (_char_id(ch) for ch in "abcd")
    for r, ch in enumerate("abc"):
        rows.start(r, SamplingParams(constraint=Constraint("regex", f"{ch}+")))
    rows.apply(torch.zeros(3, 300), [0, 1, 2])
    rows.advance([0, 1, 2], [a, b, c])  # the masks of rows 0, 1 and 2 are filled ahead
    rows.release(0)
    rows.start(3, SamplingParams(constraint=Constraint("regex", "d+")))
    ahead = rows.stats.rows_ahead
    logits = torch.zeros(3, 300)
    rows.apply(logits, [3, 2, 1])
    allowed = [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in logits]
    assert allowed == [{d}, {c, 2}, {b, 2}]
    assert rows.stats.rows_ahead - ahead == 2  # rows 1 and 2; row 3 was filled at sampling
