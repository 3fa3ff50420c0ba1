#!/usr/bin/env bash
# The ablation of docs/MODELS.md, on DSADS (train p1–p5, validate p6). A cheaper protocol than the
# bundles (training windows every 2 s, 8 epochs) applied identically to every row, so rows compare
# with each other, not with the bundles. Late/dynamic fusion use 16,24,32,48 channels per sensor
# group (five groups), early fusion 48,64,96,128.
# Usage: tools/ablation.sh [OUTDIR]   (default runs/ablation); then tools/models_report.py on the files.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/ablation}
mkdir -p "$out"
common=(--dataset dsads --train-stride 50 --epochs 8 --patience 4 --batch-size 128 --lr 3e-3 --seed 0)
run() { local name=$1; shift; OMP_NUM_THREADS=1 streamhar train "${common[@]}" "$@" --out "$out/$name.safetensors" 2> "$out/$name.log"; }
run early-eq &
run early-twn --weight-quant ternary-twn &
wait
run early-int8 --weight-quant int8 &
run early-fp32 --weight-quant fp32 --fc-quant fp32 --act-quant fp32 &
wait
run late-eq --fusion late --channels 16,24,32,48 &
run dynamic-eq --fusion dynamic --channels 16,24,32,48 &
wait
