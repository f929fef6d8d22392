"""Hugging Face directories with a tokenizer.json built here with the tokenizers library."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from radixserve.common.model_source import ModelSource, resolve_model
from radixserve.common.vocab.loading import CharTokenizer, load_tokenizer

from .conftest import corpus_lines

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>"]
TEMPLATE = (
    "{% for m in messages %}<|start_header_id|>{{ m.role }}\n{{ m.content }}<|eot_id|>{% endfor %}"
)


def _train(post_processor: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(500), trainer)
    if post_processor:  # Llama-3 style: the tokenizer adds BOS itself
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)]
        )
    return tok


def _write_dir(folder, tok: Tokenizer, config: dict, generation: dict | None = None) -> str:
    tok.save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text(json.dumps({"vocab_size": tok.get_vocab_size()}))
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation))
    return str(folder)


@pytest.fixture(scope="module")
def llama3_style(tmp_path_factory):
    tok = _train(post_processor=True)
    config = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": {"content": "<|end_of_text|>", "__type": "AddedToken"},
        "chat_template": [{"name": "default", "template": TEMPLATE}],
    }
    folder = _write_dir(tmp_path_factory.mktemp("l3"), tok, config, {"eos_token_id": [1, 2]})
    return tok, load_tokenizer(resolve_model(folder))


TEXTS = ["the quick brown fox", "héllo 🤗 wörld", "  spaces\n\ttabs", "x=42", ""]


@pytest.mark.parametrize("text", TEXTS)
def test_encode_decode_match_tokenizers(llama3_style, text):
    raw, tok = llama3_style
    ids = tok.encode(text)
    assert ids == raw.encode(text).ids
    assert ids[0] == 0 and ids.count(0) == 1  # one BOS, from the post-processor
    assert (
        tok.encode(text, add_special_tokens=False) == raw.encode(text, add_special_tokens=False).ids
    )
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(ids) == "<|begin_of_text|>" + text


def test_special_tokens_and_template(llama3_style):
    _, tok = llama3_style
    assert tok.add_bos and tok.bos_token == "<|begin_of_text|>"
    assert tok.eos_token == "<|end_of_text|>"
    assert set(tok.eos_token_ids) == {1, 2}
    assert tok.special_token_ids == frozenset({0, 1, 2, 3})
    assert tok.chat_template == TEMPLATE
    assert tok.encode("<|eot_id|>", add_special_tokens=False) == [2]


def test_add_bos_from_config_and_jinja_file(tmp_path):
    tok = _train(post_processor=False)
    (tmp_path / "chat_template.jinja").write_text("{{ messages[0].content }}")
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": True}
    loaded = load_tokenizer(ModelSource("hf", _write_dir(tmp_path, tok, config), "x"))
    assert loaded.encode("fox")[0] == 0 and loaded.encode("fox", add_special_tokens=False)[0] != 0
    assert loaded.chat_template == "{{ messages[0].content }}"
    assert loaded.eos_token_ids[0] == 2


def test_dummy_directory_uses_its_tokenizer(llama3_style, tmp_path):
    tok = _train(post_processor=False)
    folder = _write_dir(tmp_path, tok, {"eos_token": "<|eot_id|>"})
    loaded = load_tokenizer(resolve_model(folder, load_format="dummy"))
    assert loaded.encode("fox", add_special_tokens=False) == tok.encode("fox").ids


def test_dummy_without_vocabulary_is_one_char_per_id(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 1000}))
    for source in (resolve_model(None, "dummy"), resolve_model(str(tmp_path), "dummy")):
        tok = load_tokenizer(source)
        assert isinstance(tok, CharTokenizer)
    assert tok.vocab_size == 1000
    assert tok.encode("hé</s>") == [tok.encode("h")[0], tok.encode("é")[0], 2]
    assert tok.decode(tok.encode("héllo ±</s>"), skip_special_tokens=True) == "héllo ±"
    assert tok.eos_token_ids == (2,) and tok.chat_template is None


def test_directory_without_tokenizer(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(ModelSource("hf", str(tmp_path), "x"))
