"""Vocabularies, shared by the tokenizer (text <-> ids) and the worker (grammar token bytes).

One module per vocabulary format, all behind :class:`base.Tokenizer`;
``radixserve.common.vocab.loading.load_tokenizer`` picks one from a ``ModelSource``, and
``token_bytes`` gives each token's exact bytes.
"""
