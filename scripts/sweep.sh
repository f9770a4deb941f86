#!/usr/bin/env bash
# The default scaling sweep of issue 15, end to end on the embedded default (install included):
# harvest a 2M-token store of local-mixed text once, train 5 dictionary sizes (256 to 4k) x 3
# token budgets (500k, 1M, 2M) with topk k = 32, fit the scaling laws to the held-out
# 1 - variance explained, and measure every finding. Each step resumes finished work, so
# re-running after an interruption picks up where it stopped. Wall times of each phase go to
# OUT/timings.jsonl. Usage: bash scripts/sweep.sh [OUT] (default runs/sweep): the store is
# OUT/acts, the sweep's runs OUT/grid.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT="${1:-runs/sweep}"
M=.venv/bin/monosemantic
mkdir -p "$OUT"

timed() {
  local phase="$1"; shift
  local start; start=$(date +%s)
  "$@"
  local end; end=$(date +%s)
  printf '{"phase": "%s", "seconds": %d, "load_average": "%s", "ended": "%s"}\n' \
    "$phase" $((end - start)) "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%FT%TZ)" \
    >> "$OUT/timings.jsonl"
}

timed harvest "$M" harvest --out "$OUT/acts" --model gemma-3-270m \
  --hooks blocks.6.hook_resid_post --tokens 2M --corpus.source local-mixed --device cpu
timed sweep "$M" sweep "$OUT/grid" --store "$OUT/acts" --architecture topk --k 32 \
  --n-features 256 512 1k 2k 4k --tokens 500k 1M 2M --batch-size 1024 \
  --checkpoint-every 0 --eval-every 0 --device cpu
timed scaling "$M" scaling "$OUT/grid" --metric fvu  # topk's train_loss includes AuxK
timed findings "$M" findings all "$OUT/grid" --n-tokens 30000 --device cpu
echo "Timings: $OUT/timings.jsonl; fits: $OUT/grid/scaling.json; findings: $OUT/grid/findings/"
