#!/usr/bin/env bash
# Runs on the GPU machine (device tool), from the repository root, with the CUDA build of
# tributary-bench-gpu and libcudart carried in .gpu/ (see benches/gpu/README.md). Every step runs
# even if one before it fails; all output goes to stdout and $OUT/log.
W=${WORK:-/tmp/gpubench}
OUT=${OUT:-/tmp/out}
mkdir -p "$W" "$OUT"
exec > >(tee "$OUT/log") 2>&1
NV=$(python3 -c 'import nvidia,os;print(nvidia.__path__[0])')
for d in "$NV"/*/lib; do LD_LIBRARY_PATH=$d:$LD_LIBRARY_PATH; done
export LD_LIBRARY_PATH=$PWD/.gpu:$LD_LIBRARY_PATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
ldd .gpu/tributary-bench-gpu | grep -E "not found|cuda|cublas|curand|nvrtc"
step() { echo "== $*"; local t=$SECONDS; "$@"; echo "== rc=$? in $((SECONDS - t)) s"; }
step python3 benches/gpu/peer_gpu.py make "$W"
step python3 benches/gpu/peer_gpu.py reference "$W"
step .gpu/tributary-bench-gpu --model "$W/model" --adapters "$W/adapters" parity --reference "$W/reference.json"
step .gpu/tributary-bench-gpu --model "$W/model" --adapters "$W/adapters" bench
step python3 benches/gpu/peer_gpu.py bench "$W"
