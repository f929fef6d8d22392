"""Sentencepiece vocabularies: an HF directory with tokenizer.model, and the same vocabulary
written as a GGUF ``llama`` tokenizer; both checked against sentencepiece itself."""

from __future__ import annotations

import pytest

from radixserve.common.model_source import ModelSource
from radixserve.common.vocab.loading import load_tokenizer
from radixserve.tokenizer.chat_template import render_chat_for

SAMPLES = [
    "the quick brown fox",
    "prefix cache and radix batch",
    " leading space",
    "double  space and trailing ",
    "new\nline",
    "numbers 12345",
    "héllo wörld naïve",
    "日本語 and emoji 🤗🚀 (byte fallback)",
    "unseen ✓ symbols ∑∫",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_hf_dir_encode_matches_sentencepiece(sp_tokenizer, sp_reference, text):
    assert sp_tokenizer.encode(text, add_special_tokens=False) == sp_reference.encode(text)
    assert sp_tokenizer.encode(text) == [1, *sp_reference.encode(text)]


@pytest.mark.parametrize("text", SAMPLES)
def test_hf_dir_decode_round_trip(sp_tokenizer, sp_reference, text):
    ids = sp_tokenizer.encode(text)
    assert sp_tokenizer.decode(ids, skip_special_tokens=True) == sp_reference.decode(ids)
    assert sp_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_hf_dir_special_tokens(sp_tokenizer):
    assert sp_tokenizer.bos_token == "<s>" and sp_tokenizer.eos_token == "</s>"
    assert sp_tokenizer.add_bos and sp_tokenizer.eos_token_ids == (2,)
    assert sp_tokenizer.vocab_size == 400
    assert {0, 1, 2} <= sp_tokenizer.special_token_ids
    # Special tokens in the text become their ids; the piece after one gets the dummy prefix.
    ids = sp_tokenizer.encode("<s>hi</s>", add_special_tokens=False)
    assert ids[0] == 1 and ids[-1] == 2
    assert sp_tokenizer.decode(ids) == "<s> hi</s>"
    assert sp_tokenizer.decode(ids, skip_special_tokens=True) == "hi"


def test_hf_dir_chat_template(sp_tokenizer):
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]
    prompt = render_chat_for(sp_tokenizer, messages)
    assert prompt == "<s>[INST] hi [/INST] hello</s><s>[INST] bye [/INST]"
    ids = sp_tokenizer.encode(prompt, add_special_tokens=False)
    assert ids.count(1) == 2 and ids.count(2) == 1


@pytest.fixture(scope="module")
def gguf_llama(sp_reference, tmp_path_factory):
    gguf = pytest.importorskip("gguf")
    sp = sp_reference
    path = str(tmp_path_factory.mktemp("gguf") / "tiny-llama-vocab.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model("llama")
    n = sp.get_piece_size()
    writer.add_token_list([sp.id_to_piece(i) for i in range(n)])
    writer.add_token_scores([sp.get_score(i) for i in range(n)])
    writer.add_token_types([_token_type(sp, i) for i in range(n)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return load_tokenizer(ModelSource("gguf", path, "tiny-llama-vocab"))


def _token_type(sp, i: int) -> int:
    if sp.is_unknown(i):
        return 2
    if sp.is_control(i):
        return 3
    return 6 if sp.is_byte(i) else 1


@pytest.mark.parametrize("text", SAMPLES)
def test_gguf_llama_vocab_matches_sentencepiece(gguf_llama, sp_reference, text):
    assert gguf_llama.encode(text) == [1, *sp_reference.encode(text)]
    ids = sp_reference.encode(text)
    assert gguf_llama.decode(ids) == sp_reference.decode(ids) == text


def test_gguf_llama_metadata(gguf_llama):
    assert gguf_llama.add_bos and gguf_llama.bos_token == "<s>"
    assert gguf_llama.eos_token_ids == (2,)
    assert gguf_llama.chat_template is None


def test_gguf_unsupported_model_is_named(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = str(tmp_path / "bert.gguf")
    writer = gguf.GGUFWriter(path, "bert")
    writer.add_tokenizer_model("bert")
    writer.add_token_list(["[PAD]", "a"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="'bert'"):
        load_tokenizer(ModelSource("gguf", path, "bert"))
