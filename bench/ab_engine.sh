#!/usr/bin/env bash
# Engine before/after in one GPU call: batch-1 (128 in / 256 out) and offline (256 x 256/256),
# alternating two source trees twice so both see the same machine. Prints output tok/s per run.
# Usage (GPU machine): bash bench/ab_engine.sh BEFORE_TREE AFTER_TREE [OUT_DIR]
set -eu
BEFORE=$(realpath "$1")
AFTER=$(realpath "$2")
OUT=$(realpath -m "${3:-bench/results/engine-ab}")
CFG=$(realpath bench/configs/llama-3-8b.json)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
for round in 1 2; do
  for side in before after; do
    tree=$BEFORE
    [ "$side" = after ] && tree=$AFTER
    (cd "$tree" && python3 bench/bench_engine.py --config "$CFG" --workload offline \
      --num-requests 1 --input-len 128 --output-len 256 --max-running 1 \
      --out "$OUT/batch1-$side-$round.json" 2>&1 | grep -v level=info)
    (cd "$tree" && python3 bench/bench_engine.py --config "$CFG" --workload offline \
      --num-requests 256 --input-len 256 --output-len 256 \
      --out "$OUT/offline-$side-$round.json" 2>&1 | grep -v level=info)
  done
done
python3 - "$OUT" <<'PY'
import json, pathlib, sys

for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    run = json.loads(path.read_text())["runs"]["cache_on"]
    print(f"{path.stem:22s} {run['output_tok_per_s']:10.1f} output tok/s")
PY
