#!/usr/bin/env bash
# Hope ablations (NL arXiv Table 6 style) on real data through `continuum evaluate`, reduced scope:
# BTC/ETH/LTC, bars to 2021-01-01 (regimes 2017 bull, 2018 bear, 2019-20 chop; the 2020-21 bull is cut at
# its start), 60 pre-training steps per architecture (each variant is pre-trained on its own).
# Writes bench/results/ablations.json from the evaluation.json it produces. Usage: bench/ablations.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/continuum_ablations}
MODELS='hope,hope[opt=delta],hope[opt=m3],hope[no-dgd],hope[no-momentum],hope[levels=1],hope[levels=2],hope[lowest-period=168]'
start=$(date +%s)
.venv/bin/continuum evaluate --out "$OUT" --symbols BTC/USDT,ETH/USDT,LTC/USDT --end 2021-01-01 \
  --pretrain-steps 60 --models "$MODELS"
end=$(date +%s)
.venv/bin/python - "$OUT" "$((end - start))" "$MODELS" <<'PY'
import json, sys
out, secs, models = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ev = json.load(open(f"{out}/evaluation.json"))
json.dump({"command": f"bench/ablations.sh {out}", "models": models, "wall_s": secs, "evaluation": ev},
          open("bench/results/ablations.json", "w"), indent=1, default=str)
print("wrote bench/results/ablations.json", secs, "s")
PY
