"""The embedded model's byte-level BPE vocabulary, checked against transformers' GGUF loader."""

from __future__ import annotations

import pytest

SAMPLES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\n\n\nand\r\nCRLF",
    "digits 0123456789 and 3.14159, 1,000,000 and x2y3",
    "unicode: héllo wörld naïve façade Ωμέγα Привет",
    "CJK: 日本語のテキスト、中文文本。한국어",
    "emoji: 🤗🚀👩‍👩‍👧‍👦 🇫🇷 ✅",
    "code: def f(x):\n    return {'a': [1, 2]}  # comment\n",
    "it's they're we've I'm you'll he'd",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more<repo_name>x",
    "          ",
    "a" * 300,
    "",
    "\u200b zero width \u00a0nbsp",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_encode_matches_transformers(smollm, smollm_reference, text):
    assert smollm.encode(text) == smollm_reference.encode(text, add_special_tokens=True)
    assert smollm.encode(text, add_special_tokens=False) == smollm_reference.encode(
        text, add_special_tokens=False
    )


@pytest.mark.parametrize("text", SAMPLES)
@pytest.mark.parametrize("skip", [False, True])
def test_decode_matches_transformers(smollm, smollm_reference, text, skip):
    ids = smollm_reference.encode(text)
    expected = smollm_reference.decode(
        ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False
    )
    assert smollm.decode(ids, skip_special_tokens=skip) == expected
    if not skip:
        assert smollm.decode(ids) == text


def test_tokens_match_transformers(smollm, smollm_reference):
    ids = list(range(0, smollm.vocab_size, 97))
    assert smollm.convert_ids_to_tokens(ids) == smollm_reference.convert_ids_to_tokens(ids)


def test_digits_split_individually(smollm):
    # llama.cpp's 'smollm' pre-tokenizer (and SmolLM's tokenizer.json) split every digit.
    tokens = smollm.convert_ids_to_tokens(smollm.encode("year 2024"))
    assert tokens[-4:] == ["2", "0", "2", "4"]


def test_special_tokens_and_metadata(smollm):
    assert smollm.vocab_size == 49152 and smollm.max_token_id == 49151
    assert smollm.bos_token_id == 1 and smollm.bos_token == "<|im_start|>"
    assert smollm.eos_token == "<|im_end|>"
    assert 2 in smollm.eos_token_ids and 0 in smollm.eos_token_ids  # <|im_end|>, <|endoftext|>
    assert not smollm.add_bos
    assert {0, 1, 2} <= smollm.special_token_ids
    assert smollm.chat_template and "<|im_start|>" in smollm.chat_template
    assert smollm.encode("<|im_end|>") == [2]


def test_unknown_ids_are_ignored(smollm):
    ids = smollm.encode("hi")
    assert smollm.decode([*ids, 10**6, -1]) == "hi"
    assert smollm.convert_ids_to_tokens([10**6]) == [""]
