"""pb <-> domain conversions, one module per proto file, each holding both directions.

``common`` (common.proto: sampling, top logprobs, model info, finish reasons), ``scheduler``
(scheduler.proto: a tokenizer's Connect stream) and ``worker`` (worker.proto: the step stream).
Both ends of a wire import the same module, so a field is converted in one place.
"""
