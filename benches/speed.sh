#!/usr/bin/env bash
# Speed: us and the Python peer on the same CPU, model and chunk texts, in one run.
#   benches/speed.sh [CHUNKS] [DATASET_DIR]     (defaults 10000, ../shared/eval/scifact-dev)
set -euo pipefail
cd "$(dirname "$0")/.."
chunks=${1:-10000}
dataset=${2:-../shared/eval/scifact-dev}
scripts/setup.sh
if [ ! -x .venv-bench/bin/python ]; then python3 -m venv .venv-bench; fi
.venv-bench/bin/pip install --quiet --disable-pip-version-check sentence-transformers bm25s PyStemmer chromadb
model="$PWD/models/all-MiniLM-L6-v2"
out=target/speed-$chunks
mkdir -p "$out"
cargo build --locked -q -p tributary-benches --bin speed
ours=$(TRIBUTARY_EMBED_MODEL="$model" target/debug/speed --corpus "$dataset/corpus.jsonl" \
  --queries "$dataset/queries.jsonl" --chunks "$chunks" --data-dir "$out/data" --export "$out/chunks.jsonl")
peer=$(HF_HUB_OFFLINE=1 ANONYMIZED_TELEMETRY=False .venv-bench/bin/python benches/peer_speed.py \
  "$out/chunks.jsonl" "$dataset/queries.jsonl" "$model" 2>/dev/null | tail -n1)
echo "ours: $ours"
echo "peer: $peer"
python3 - "$ours" "$peer" <<'PY'
import json, sys
o, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"chunks: {o['chunks']}")
print(f"ingest chunks/s   ours {o['ingest_chunks_per_s']:.1f}  peer {p['ingest_chunks_per_s']:.1f}  ratio {o['ingest_chunks_per_s']/p['ingest_chunks_per_s']:.2f}x")
print(f"search p50 ms     ours {o['search_p50_ms']:.2f}  peer {p['search_p50_ms']:.2f}  speedup {p['search_p50_ms']/o['search_p50_ms']:.2f}x")
print(f"search p99 ms     ours {o['search_p99_ms']:.2f}  peer {p['search_p99_ms']:.2f}  speedup {p['search_p99_ms']/o['search_p99_ms']:.2f}x")
print(f"peak RSS MiB      ours {o['peak_rss_mib']:.0f}  peer {p['peak_rss_mib']:.0f}")
PY
