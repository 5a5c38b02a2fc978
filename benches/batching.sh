#!/usr/bin/env bash
# Serving (issue #22): the scheduler under 1, 4 and 16 concurrent clients, each with its own
# LoRA adapter, on cited-answer prompts of three SciFact abstracts; and llama.cpp on the same
# prompts, GGUF and threads, in the same run (benches/peer_batching.py; its Python server answers
# one request at a time, so its answers/s holds at any number of clients).
#   benches/batching.sh [ANSWERS] [PROMPTS]     (defaults 16, auto: fused where the CPU allows)
set -euo pipefail
cd "$(dirname "$0")/.."
answers=${1:-16}
prompts=${2:-auto}
threads=$(nproc)
source scripts/env.sh
if [ ! -x .venv-bench/bin/python ]; then python3 -m venv .venv-bench; fi
# llama-cpp-python compiles llama.cpp from source the first time (10-20 minutes on 2 cores).
.venv-bench/bin/python -c 'import llama_cpp' 2>/dev/null ||
  .venv-bench/bin/pip install --quiet --disable-pip-version-check --no-cache-dir llama-cpp-python
cargo build --locked -q -p tributary-benches --bin batching
dump=$(mktemp)
RAYON_NUM_THREADS=$threads target/debug/batching --clients 1,4,16 --answers "$answers" --prompts "$prompts" \
  --dump-prompts "$dump"
.venv-bench/bin/python benches/peer_batching.py "$TRIBUTARY_LLM" "$dump" "$answers" 64 "$threads" | tail -n1
rm -f "$dump"
