"""The OpenAI-compatible HTTP door, split by job as SGLang's ``entrypoints/openai/`` is.

- ``protocol``: the request bodies (pydantic, strict);
- ``sampling``: a body's fields as :class:`~radixserve.common.types.SamplingParams`;
- ``render``: the response bodies and stream events of both endpoints (``Format``, ``ChatFormat``);
- ``logprobs``: the ``logprobs`` object of a choice, completions' and chat's;
- ``usage``: the ``usage`` object;
- ``sse``: SSE framing, the event stream and its response;
- ``serving_base``: what both endpoints do with a request (build, run, answer or stream);
- ``serving_chat`` / ``serving_completions``: ``/v1/chat/completions`` and ``/v1/completions``;
- ``errors``: error bodies and the exception -> status mapping;
- ``routes``: the FastAPI app (routes, API key, CORS);
- ``http_server``: uvicorn in the tokenizer's event loop.

Running a request (its n samples, the metrics, tool-call streams) is not here: the gRPC door does
it too, through :mod:`radixserve.tokenizer.serving`. Nothing is imported here so that the gRPC-only
service does not load FastAPI.
"""
