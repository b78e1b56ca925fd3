#!/usr/bin/env bash
# Hope ablations (NL arXiv Table 6 style) on real data through `continuum evaluate`, reduced scope:
# BTC/ETH/LTC, bars to 2021-01-01 (regimes 2017 bull, 2018 bear, 2019-20 chop; the 2020-21 bull is cut at
# its start), 60 pre-training steps per architecture (each variant is pre-trained on its own).
# Merges the evaluation.json it produces into bench/results/ablations.json under RUN.
# Usage: bench/ablations.sh [OUT_DIR] [RUN]   (MODELS=... in the environment overrides the variants)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/continuum_ablations}
RUN=${2:-main}
MODELS=${MODELS:-'hope,hope[opt=delta],hope[opt=m3],hope[no-dgd],hope[no-momentum],hope[levels=1],hope[levels=2],hope[lowest-period=168]'}
start=$(date +%s)
.venv/bin/continuum evaluate --out "$OUT" --symbols BTC/USDT,ETH/USDT,LTC/USDT --end 2021-01-01 \
  --pretrain-steps 60 --models "$MODELS"
end=$(date +%s)
.venv/bin/python - "$OUT" "$((end - start))" "$MODELS" "$RUN" <<'PY'
import json, os, sys
out, secs, models, run = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
dest = "bench/results/ablations.json"
res = json.load(open(dest)) if os.path.exists(dest) else {"runs": {}}
ev = json.load(open(f"{out}/evaluation.json"))
cmd = f"MODELS='{models}' bench/ablations.sh {out} {run}"
res["runs"][run] = {"command": cmd, "models": models, "wall_s": secs, "evaluation": ev}
json.dump(res, open(dest, "w"), indent=1, default=str)
print("wrote", dest, run, secs, "s")
PY
