#!/usr/bin/env bash
# One device call: serving through all three services, this tree against an older checkout
# (BASE, with its own generated stubs) in the same run, plus the in-process engine's offline
# figure that the 256-concurrent serving throughput is compared with. Results under $OUT.
# Usage (GPU machine, repo root): BASE=.baseline bash bench/gpu_serving_ab.sh
set -u
PY=${PY:-python3}
OUT=${OUT:-bench/results}
BASE=${BASE:-.baseline}
CONFIG=$(realpath "${CONFIG:-bench/configs/llama-3-8b.json}")
VOCAB=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$CONFIG")
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RADIXSERVE_LOG_LEVEL=WARNING
B="$PY bench/bench_serving.py --base-url http://127.0.0.1:8000 --grpc-address 127.0.0.1:50051"
B="$B --vocab-size $VOCAB --disable-tqdm --dataset fixed"
$PY -m radixserve.launch --model "$CONFIG" --load-format dummy -- --max-rows 300 &
LAUNCH=$!
for _ in $(seq 300); do
  $PY -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:8000/v1/models').status_code!=200)" \
    2>/dev/null && break
  kill -0 $LAUNCH 2>/dev/null || { echo "the services died at start"; exit 1; }
  sleep 1
done
for be in openai grpc; do
  $B --backend $be --num-prompts 5 --input-len 128 --output-len 256 --max-concurrency 1 \
    --output-file "$OUT/serving-batch1-$be.json" | grep -E "completed|output throughput|^TTFT|^TPOT|error"
  $B --backend $be --num-prompts 256 --input-len 256 --output-len 256 \
    --output-file "$OUT/serving-c256-$be.json" | grep -E "completed|output throughput|error"
done
$B --backend grpc --num-prompts 64 --input-len 128 --output-len 256 \
  --output-file "$OUT/serving-c64-grpc.json" | grep -E "completed|output throughput|error"
kill -TERM $LAUNCH; wait $LAUNCH
echo "== engine offline 256 x 256/256 (this tree)"
$PY bench/bench_engine.py --config "$CONFIG" --workload offline --num-requests 256 \
  --input-len 256 --output-len 256 --out "$OUT/engine-offline.json" 2>&1 | grep -v level= | tail -3
[ -n "${SKIP_BASE:-}" ] && exit 0
echo "== base tree: gRPC batch 1 and 64 concurrent (its own bench_serving)"
(cd "$BASE" && timeout 240 $PY bench/bench_serving.py --config "$CONFIG" \
  --out "$OUT/serving-base.json" 2>&1 | grep -v level= | tail -6)
