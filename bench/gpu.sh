#!/usr/bin/env bash
# Hope on one accelerator, one table (issue 14): stream-steps/s from 512 to 65,536 streams, per-step (calls of
# 1 bar) and chunked replay (calls of 8 and 24 bars), memory per stream, pre-training steps/s, the device name.
# Under 8 minutes on one GPU. Writes bench/results/hope_throughput_$DEVICE.json.
#
#   bash bench/gpu.sh                                          # CUDA
#   DEVICE=cpu STREAMS=8,64 PRETRAIN_STEPS=2 bash bench/gpu.sh  # the same script end to end without a GPU
#   TESTS=1 bash bench/gpu.sh                                  # and the tests marked cuda first
#   PRECISION=bf16 bash bench/gpu.sh                           # the memories' products in bf16 (or tf32)
#   COMPILE=1 STREAMS=4096 bash bench/gpu.sh                   # torch.compile'd write (compiles per shape)
#
# Knobs (environment): DEVICE (cuda), STREAMS (512,4096,16384,65536), CALLS (8,24), BARS (timed bars at <= 64
# streams, 96), BIG_BARS (above 64 streams, 48), PRETRAIN_STEPS (30), REPEAT (runs of each
# form, best counts, 2), THREADS (host threads, 4), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"; [ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, whatever the venv was installed from
DEVICE="${DEVICE:-cuda}"
if [[ "$DEVICE" == cuda* ]]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible (DEVICE=cpu runs on the CPU)')"
fi
if [[ "${TESTS:-0}" == 1 ]]; then
  CONTINUUM_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -m cuda tests/learner/test_hope_device.py
fi
exec "$PY" bench/hope_throughput.py --device "$DEVICE" --threads "${THREADS:-4}" --no-gru --repeat "${REPEAT:-2}" \
  --streams "${STREAMS:-512,4096,16384,65536}" --calls "${CALLS:-8,24}" \
  --bars "${BARS:-96}" --big-bars "${BIG_BARS:-48}" --pretrain-steps "${PRETRAIN_STEPS:-30}" \
  --precision "${PRECISION:-fp32}" $([[ "${COMPILE:-0}" == 1 ]] && echo --compile) \
  --out "bench/results/hope_throughput_${DEVICE%%:*}.json"
