#!/usr/bin/env bash
# One device call: the serving figures of issue 12 through all three services, HTTP and gRPC,
# against one `radixserve.launch` (Llama-3-8B shapes, dummy weights). Results: $OUT/serving-*.json.
# Usage (GPU machine, repo root): bash bench/gpu_serving.sh
# QUICK=1 CONFIG=bench/configs/tiny-llama.json bash bench/gpu_serving.sh  checks it on a CPU.
set -u
OUT=${OUT:-bench/results}
CONFIG=${CONFIG:-bench/configs/llama-3-8b.json}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RADIXSERVE_LOG_LEVEL=WARNING
VOCAB=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$CONFIG")
$PY -m radixserve.launch --model "$CONFIG" --load-format dummy -- --max-rows 300 &
LAUNCH=$!
trap 'kill -TERM $LAUNCH 2>/dev/null; wait $LAUNCH' EXIT
for _ in $(seq 900); do
  $PY -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:8000/v1/models').status_code!=200)" \
    2>/dev/null && break
  kill -0 $LAUNCH 2>/dev/null || { echo "services died"; exit 1; }
  sleep 1
done
B="$PY bench/bench_serving.py --base-url http://127.0.0.1:8000 --grpc-address 127.0.0.1:50051"
B="$B --vocab-size $VOCAB --disable-tqdm"
if [ "${QUICK:-0}" = 1 ]; then S=8; L=32; G=4; else S=1; L=1; G=1; fi
run() { local name=$1; shift; echo "== $name"; $B "$@" --output-file "$OUT/serving-$name.json"; }
# batch 1 (128 in / 256 out), HTTP and gRPC
for be in openai grpc; do
  run "batch1-$be" --backend $be --dataset fixed --num-prompts 5 --input-len $((128 / S)) \
    --output-len $((256 / S)) --max-concurrency 1
done
# 64 concurrent (gRPC) and 256 at once (both), fixed lengths
run "c64-grpc" --backend grpc --dataset fixed --num-prompts $((64 / G)) \
  --input-len $((128 / S)) --output-len $((256 / S))
for be in openai grpc; do
  run "c256-$be" --backend $be --dataset fixed --num-prompts $((256 / G)) \
    --input-len $((256 / S)) --output-len $((256 / S))
done
# online: Poisson 4 req/s, 1024 in / 256 out (HTTP): ITL p99 vs p50, TTFT p50
run "poisson4-http" --dataset fixed --num-prompts $((200 / G)) --input-len $((1024 / S)) \
  --output-len $((256 / S)) --request-rate 4
# SGLang's gate workloads: random 4K/2K x 500 all at once; 100 prompts at 1 req/s
run "gate-random-4k2k" --dataset random --num-prompts $((500 / G)) --input-len $((4096 / L)) \
  --output-len $((2048 / L)) --random-range-ratio 0.0
run "gate-rate1" --dataset random --num-prompts $((100 / G)) --input-len $((4096 / L)) \
  --output-len $((2048 / L)) --random-range-ratio 0.0 --request-rate 1
# shared prefix (radix cache): 8 groups x 16 questions on a 2,048-token system prompt
run "shared-prefix" --dataset shared-prefix --gsp-system-prompt-len $((2048 / S)) \
  --gsp-question-len $((128 / S)) --output-len $((256 / S))
