"""Tokenizer backends: one module per vocabulary format, all behind :class:`base.Tokenizer`.

``radixserve.services.tokenizer.tokenization.load_tokenizer`` picks one from a ``ModelSource``.
"""
