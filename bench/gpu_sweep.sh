#!/usr/bin/env bash
# One device call: GPU tests, then the engine benchmarks, results under $OUT (or bench/results).
# Usage (on the GPU machine, repo root): bash bench/gpu_sweep.sh
set -u
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -m gpu -q -p no:cacheprovider tests/worker tests/kernels --ignore=tests/worker/test_hf_parity.py 2>&1 | tail -25 \
  | tee "$OUT/gpu-tests.log"
B="python3 bench/bench_engine.py --config bench/configs/llama-3-8b.json"
$B --workload shared-prefix --num-requests 128 --prefix-len 2048 --question-len 32 \
  --output-len 64 --out "$OUT/engine-shared-prefix.json" 2>&1 | grep -v level=info
$B --workload offline --num-requests 256 --input-len 256 --output-len 256 \
  --out "$OUT/engine-offline.json" 2>&1 | grep -v level=info
$B --workload offline --num-requests 1 --input-len 128 --output-len 256 --max-running 1 \
  --out "$OUT/engine-batch1.json" 2>&1 | grep -v level=info
