#!/usr/bin/env bash
# Retrieval quality: us and the Python peer (bm25s + sentence-transformers) in one run.
#   benches/quality.sh [DATASET_DIR]    (default ../shared/eval/scifact-dev)
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:-../shared/eval/scifact-dev}
scripts/setup.sh
if [ ! -x .venv-bench/bin/python ]; then python3 -m venv .venv-bench; fi
.venv-bench/bin/pip install --quiet --disable-pip-version-check sentence-transformers bm25s PyStemmer
model="$PWD/models/all-MiniLM-L6-v2"
peer_out=target/peer-quality
HF_HUB_OFFLINE=1 .venv-bench/bin/python benches/peer_quality.py "$dataset" "$model" "$peer_out"
TRIBUTARY_EMBED_MODEL="$model" cargo run --locked -p tributary-benches --bin quality -- \
  --dataset "$dataset" --data-dir target/bench-data/quality \
  --peer-run "bm25s=$peer_out/bm25s.trec" --peer-run "MiniLM=$peer_out/minilm.trec" \
  --peer-run "bm25s+MiniLM convex=$peer_out/hybrid-convex.trec" --peer-run "bm25s+MiniLM rrf=$peer_out/hybrid-rrf.trec"
