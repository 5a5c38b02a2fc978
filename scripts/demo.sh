#!/usr/bin/env bash
# The main job: set up, build, and run `tributary demo` on a fresh data directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export TRIBUTARY_EMBED_MODEL="$PWD/models/all-MiniLM-L6-v2"
export TRIBUTARY_LLM="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$PWD/models/onnxruntime/libonnxruntime.so}"
export TRIBUTARY_DATA_DIR="${TRIBUTARY_DATA_DIR:-$PWD/tributary-data}"
cargo run --locked --quiet -p tributary -- demo
