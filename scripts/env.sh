# Sourced by the scripts that run tributary or its tests: sets up the machine (scripts/setup.sh)
# and points the binary and the tests at the project's models.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
export TRIBUTARY_EMBED_MODEL="$PWD/models/all-MiniLM-L6-v2"
export TRIBUTARY_LLM="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$PWD/models/onnxruntime/libonnxruntime.so}"
