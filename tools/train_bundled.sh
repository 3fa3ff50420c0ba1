#!/usr/bin/env bash
# Reproduces the bundled models in streamhar/models/bundled/ from the real data sets
# (data folder: --data-dir, else $STREAMHAR_DATA, else replay_data/). CPU only; the two trainings
# run side by side, one core each. Seeds are fixed; results are recorded in docs/MODELS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=streamhar/models/bundled
common=(--epochs 12 --patience 5 --batch-size 128 --lr 3e-3 --seed 0 "$@")
OMP_NUM_THREADS=1 streamhar train --dataset dsads "${common[@]}" --out "$out/dsads.safetensors" 2> "${TMPDIR:-/tmp}/train-dsads.log" &
OMP_NUM_THREADS=1 streamhar train --dataset usc-had "${common[@]}" --out "$out/usc-had.safetensors" 2> "${TMPDIR:-/tmp}/train-usc-had.log" &
wait
streamhar eval bundled:dsads
streamhar eval bundled:usc-had
