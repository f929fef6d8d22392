#!/usr/bin/env bash
# One device call on a multi-GPU host: GPU tests, all-reduce latency, and the engine benchmark arms
# (pre-change code, this tree at TP=1, TP=1 through the group path, TP=N), results under $OUT.
# Usage (GPU machine, repo root): [TP=2|4] BASE=.baseline bash bench/gpu_tp_sweep.sh [tests|bench|all]
set -u
OUT=${OUT:-bench/results}
PART=${1:-all}
TP=${TP:-2}
mkdir -p "$OUT"
# NVLink multicast stays off: it can take a shared host's GPUs out of service.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 RADIXSERVE_LOG_LEVEL=WARNING
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
if [ "$PART" != bench ]; then
  timeout 420 python3 -m pytest -m gpu -q -p no:cacheprovider -x \
    tests/worker tests/kernels tests/observability 2>&1 | tail -30 | tee "$OUT/gpu-tests.log"
  timeout 120 python3 bench/bench_allreduce.py --world-size "$TP" --iters 100 \
    --out "$OUT/allreduce.json" 2>&1 | grep -v Warning | tail -8
fi
if [ "$PART" != tests ]; then
  timeout 540 python3 bench/bench_tp.py --baseline-root "${BASE:-.baseline}" --tp "$TP" \
    --repeats "${REPEATS:-1}" --out "$OUT/tp-engine.json" 2>&1 | grep -v "level=info" | tail -30
fi
