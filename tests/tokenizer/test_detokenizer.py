"""Incremental detokenization equals decoding the whole sequence, on every backend."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radixserve.common.vocab.loading import ByteTokenizer, CharTokenizer
from radixserve.tokenizer.detokenizer import IncrementalDetokenizer

REPLACEMENT = "\ufffd"
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
PIECES = list("abc xyz\n\t0123") + list("éß日本🤗🚀✓Ω") + ["<s>", "</s>", "the ", " fox"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@pytest.fixture(params=["smollm", "sp_tokenizer", "byte", "char"])
def tok(request):
    if request.param == "byte":
        return ByteTokenizer()
    if request.param == "char":
        return CharTokenizer(128256)
    return request.getfixturevalue(request.param)


def _interesting_ids(tok) -> list[int]:
    """Ids that split characters (byte pieces) and specials, beside ordinary words."""
    ids = tok.encode("日本語 🤗🚀 é ✓ the quick fox 42 \n", add_special_tokens=False)
    return sorted(set(ids) | set(tok.special_token_ids) | {tok.max_token_id})


def _run(tok, ids, cuts, skip, prompt=None) -> str:
    detok = IncrementalDetokenizer(tok, skip_special_tokens=skip, prompt_ids=prompt)
    out, start = [], 0
    for cut in sorted(set(cuts)) + [len(ids)]:
        out.append(detok.feed(ids[start:cut]))
        assert not out[-1].endswith(REPLACEMENT) or start == cut
        start = cut
    out.append(detok.flush())
    assert "".join(out) == detok.text
    return detok.text


def _check(got: str, want: str) -> None:
    if REPLACEMENT in want:  # invalid UTF-8: replacement counts may differ by window
        assert got.replace(REPLACEMENT, "") == want.replace(REPLACEMENT, "")
    else:
        assert got == want


@PROPERTY
@given(data=st.data(), skip=st.booleans())
def test_random_ids_decode_incrementally_as_whole(tok, data, skip):
    pool = _interesting_ids(tok)
    anything = st.integers(0, tok.max_token_id)
    ids = data.draw(st.lists(st.one_of(st.sampled_from(pool), anything), max_size=30))
    cuts = data.draw(st.lists(st.integers(0, len(ids)), max_size=len(ids)))
    _check(_run(tok, ids, cuts, skip), tok.decode(ids, skip_special_tokens=skip))


@PROPERTY
@given(text=TEXT, data=st.data())
def test_text_round_trips_token_by_token(tok, text, data):
    ids = tok.encode(text, add_special_tokens=False)
    cuts = data.draw(st.lists(st.integers(0, len(ids)), max_size=len(ids)))
    assert _run(tok, ids, list(range(len(ids))), skip=False) == tok.decode(ids)
    assert _run(tok, ids, cuts, skip=False) == tok.decode(ids)


@PROPERTY
@given(prompt=TEXT, completion=TEXT)
def test_continuation_after_prompt(tok, prompt, completion):
    prompt_ids = tok.encode(prompt)
    ids = tok.encode(completion, add_special_tokens=False)
    whole = tok.decode(prompt_ids + ids)
    head = tok.decode(prompt_ids)
    got = _run(tok, ids, list(range(len(ids))), skip=False, prompt=prompt_ids)
    assert whole.startswith(head) and got == whole[len(head) :]


def test_sentencepiece_keeps_leading_space_after_prompt(sp_tokenizer):
    prompt = sp_tokenizer.encode("the quick")
    ids = sp_tokenizer.encode("brown fox", add_special_tokens=False)  # "▁brown"
    detok = IncrementalDetokenizer(sp_tokenizer, prompt_ids=prompt)
    assert "".join(detok.feed([i]) for i in ids) + detok.flush() == " brown fox"


def test_never_emits_half_a_character(smollm):
    ids = smollm.encode("🤗", add_special_tokens=False)
    assert len(ids) > 1  # the emoji spans several byte-level tokens
    detok = IncrementalDetokenizer(smollm)
    assert [detok.feed([i]) for i in ids] == [""] * (len(ids) - 1) + ["🤗"]
    detok = IncrementalDetokenizer(smollm)
    assert detok.feed(ids[:1]) == "" and detok.flush() == REPLACEMENT


def test_skips_special_tokens(smollm):
    ids = smollm.encode("hi<|im_end|>", add_special_tokens=False)
    assert IncrementalDetokenizer(smollm).feed(ids) == "hi"
    assert IncrementalDetokenizer(smollm, skip_special_tokens=False).feed(ids) == "hi<|im_end|>"
