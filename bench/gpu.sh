#!/usr/bin/env bash
# Hope throughput on CUDA with thousands of streams (run on a machine with a GPU):
#   bash bench/gpu.sh
# Writes bench/results/hope_throughput_cuda.json. Uses the repository's venv if present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"; [ -x "$PY" ] || PY=python3
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.cuda.get_device_name(0))"
"$PY" bench/hope_throughput.py --device cuda --threads 4 --streams 512,4096,16384 --bars 192 \
  --out bench/results/hope_throughput_cuda.json
