"""radixserve: an SGLang-style LLM inference server as gRPC microservices.

Every module's import name is its path under ``services/`` (the source root): ``radixserve.worker``
lives in ``services/radixserve/worker/``; the generated gRPC stubs are built into
``services/radixserve/v1/`` by ``make protos``. The Triton kernels are the separate distribution
``radixserve-kernels`` (``kernels/radixserve_kernels/``).
"""
