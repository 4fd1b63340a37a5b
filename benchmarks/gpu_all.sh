#!/usr/bin/env bash
# Everything benchmarks/ measures on a CUDA machine, in one go (about 8 minutes on an H200):
# the GPU checks, then model_speed.py in fp32 and bf16 for both clip sizes.
#   benchmarks/gpu_all.sh OUT_DIR [OFFICIAL_SRC] [REFERENCE_DIR]
# OFFICIAL_SRC: a checkout of PKU-YuanGroup/WF-VAE outside this repo (adds the official rows).
# Each step has its own time limit, so one stuck step cannot take the others' time.
set -u
out=${1:?usage: benchmarks/gpu_all.sh OUT_DIR [OFFICIAL_SRC] [REFERENCE_DIR]}
official=${2:-}
reference=${3:-tests/reference/wfvae-tiny-parity}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/device.txt"
timeout 90 python3 benchmarks/gpu_check.py --reference "$reference" 2>&1 | tee "$out/gpu_check.txt"
extra=()
[ -n "$official" ] && extra=(--official-src "$official" --check)
for dtype in fp32 bf16; do
    timeout 220 python3 benchmarks/model_speed.py --device cuda --dtype "$dtype" --threads 8 \
        --sizes 17x128x128,33x256x256 --models wfvae-L,wfvae-L-chunked,wfvae-S,wan,cogvideox,hunyuan \
        --reps 5 --case-timeout 90 --json "$out/$dtype.json" "${extra[@]}" >"$out/$dtype.md" 2>"$out/$dtype.log"
    echo "model_speed $dtype: exit $?"; cat "$out/$dtype.md"
done
