"""The dummy models' stand-in vocabulary: every id is one whole character, streamed at once."""

from __future__ import annotations

import json

from radixserve.common.model_source import resolve_model
from radixserve.common.vocab.char_vocab import CharTokenizer
from radixserve.common.vocab.loading import load_tokenizer
from radixserve.tokenizer.detokenizer import IncrementalDetokenizer

LLAMA3_VOCAB = 128256


def test_every_id_decodes_alone_to_one_character_and_round_trips() -> None:
    tok = CharTokenizer(LLAMA3_VOCAB)
    assert tok.vocab_size == LLAMA3_VOCAB
    seen = set()
    for i in range(3, LLAMA3_VOCAB):
        text = tok.decode([i])
        assert len(text) == 1 and (text.isprintable() or text in "\n\t"), (i, text)
        assert text != "\ufffd"
        assert tok.encode(text, add_special_tokens=False) == [i], (i, text)
        seen.add(text)
    assert len(seen) == LLAMA3_VOCAB - 3  # no two ids share a spelling
    assert tok.decode([0, 1, 2]) == "<unk><s></s>"
    assert tok.decode([0, 1, 2], skip_special_tokens=True) == ""


def test_streamed_text_follows_tokens_one_for_one() -> None:
    """The detokenizer never holds a token back, whatever random ids a dummy model emits."""
    tok = CharTokenizer(LLAMA3_VOCAB)
    detok = IncrementalDetokenizer(tok, prompt_ids=[5, 6, 7])
    ids = list(range(3, LLAMA3_VOCAB, 997)) + [LLAMA3_VOCAB - 1, 200, 128, 0xC3]
    for i in ids:
        assert detok.feed([i]) == tok.decode([i])
    assert detok.flush() == ""


def test_text_encodes_per_character() -> None:
    tok = CharTokenizer(1000)
    ids = tok.encode("hé\n</s>x", add_special_tokens=False)
    assert tok.decode(ids) == "hé\n</s>x" and len(ids) == 5 and ids[3] == 2
    assert tok.decode(tok.encode("日")) == "<unk>"  # past a small vocabulary
    assert tok.decode([1000]) == ""  # outside the vocabulary
    assert CharTokenizer(10).vocab_size >= 100  # every ASCII glyph, even for tiny configs


def test_dummy_models_get_it(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": LLAMA3_VOCAB}))
    tok = load_tokenizer(resolve_model(str(tmp_path), "dummy"))
    assert isinstance(tok, CharTokenizer) and tok.vocab_size == LLAMA3_VOCAB
    embedded = load_tokenizer(resolve_model(None, "dummy"))
    assert isinstance(embedded, CharTokenizer) and embedded.vocab_size == 49152
