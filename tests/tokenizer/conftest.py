"""Fixtures: the embedded model's tokenizer (and transformers' as the reference), and small
tokenizers the tests build themselves (sentencepiece, tokenizer.json, GGUF llama vocab)."""

from __future__ import annotations

import json
import os
import random

import pytest

from radixserve.common.model_source import ModelSource, embedded_gguf_path, resolve_model
from radixserve.common.vocab.loading import Tokenizer, load_tokenizer

WORDS = (
    "the quick brown fox jumps over lazy dog inference server token cache prefix radix "
    "batch schedule decode prefill attention kernel memory stream request reply model"
).split()
EXTRA = [
    "héllo wörld",
    "naïve café",
    "日本語のテキスト",
    "emoji 🤗🚀",
    "x = 42 + 7",
    "  indented",
    "",
]


def corpus_lines(n: int = 2000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]
    return lines + EXTRA * 20


@pytest.fixture(scope="session")
def smollm() -> Tokenizer:
    return load_tokenizer(resolve_model(None))


@pytest.fixture(scope="session")
def smollm_reference():
    transformers = pytest.importorskip("transformers")
    path = embedded_gguf_path()
    return transformers.AutoTokenizer.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path)
    )


@pytest.fixture(scope="session")
def sp_model_file(tmp_path_factory) -> str:
    """A small byte-fallback BPE sentencepiece model trained here, Llama-style normalization."""
    spm = pytest.importorskip("sentencepiece")
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines()), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        bos_id=1,
        eos_id=2,
        unk_id=0,
        minloglevel=2,
    )
    return str(folder / "tokenizer.model")


LLAMA2_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)


@pytest.fixture(scope="session")
def sp_dir(sp_model_file, tmp_path_factory) -> str:
    """An HF-style directory holding only tokenizer.model (+ configs)."""
    folder = tmp_path_factory.mktemp("sp_hf")
    (folder / "tokenizer.model").write_bytes(open(sp_model_file, "rb").read())
    (folder / "config.json").write_text(json.dumps({"eos_token_id": 2, "vocab_size": 400}))
    config = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": LLAMA2_TEMPLATE}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.fixture(scope="session")
def sp_tokenizer(sp_dir) -> Tokenizer:
    return load_tokenizer(ModelSource("hf", sp_dir, "tiny-spm"))


@pytest.fixture(scope="session")
def sp_reference(sp_model_file):
    spm = pytest.importorskip("sentencepiece")
    return spm.SentencePieceProcessor(model_file=sp_model_file)
