#!/usr/bin/env bash
# HTTP load: wrk against `tributary serve` on 127.0.0.1, search then answers.
#   benches/http/load.sh [DATASET_DIR]   (default ../shared/eval/scifact-dev: corpus.jsonl, queries.jsonl)
# Prints throughput, latency percentiles, errors and the server's peak memory (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/../.."
dataset=${1:-../shared/eval/scifact-dev}
corpus=$dataset/corpus.jsonl
duration=${DURATION:-20s}
scripts/setup.sh
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
cargo build --locked -p tributary
bin=target/debug/tributary
# The ingested corpus is kept for the next run (ingesting SciFact takes ~6 minutes on 2 cores).
data=target/bench-data/http
trap 'kill "$server" 2>/dev/null || true' EXIT
export TRIBUTARY_DATA_DIR="$data" TRIBUTARY_EMBED_MODEL="$PWD/models/all-MiniLM-L6-v2"
export TRIBUTARY_LLM="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$data/ingested" ]; then
  rm -rf "$data" && mkdir -p "$data"
  $bin datanet create corpus --owner 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 >/dev/null
  $bin ingest --datanet corpus --contributor 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 "$corpus" 2>/dev/null
  touch "$data/ingested"
fi
$bin serve --bind 127.0.0.1:18181 --anonymous-rate-per-minute 100000000 --max-generating 32 \
  --max-answer-tokens 64 > "$data/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:18181/readyz >/dev/null && break; sleep 0.2; done
# The queries as JSON strings, one a line, for search.lua.
export QUERIES="$data/queries.txt"
python3 -c 'import json, sys; [print(json.dumps(json.loads(l)["text"])) for l in open(sys.argv[1]) if l.strip()]' \
  "$dataset/queries.jsonl" > "$QUERIES"

run() { # name connections script [duration]
  local threads=$(( $2 < 2 ? $2 : 2 )) time=${4:-$duration}
  echo "== $1: wrk -t$threads -c$2 -d$time --timeout 120s"
  wrk -t"$threads" -c"$2" -d"$time" --timeout 120s --latency -s "benches/http/$3" http://127.0.0.1:18181 | \
    grep -E "Requests/sec|Latency|50%|90%|99%|Non-2xx|Socket errors|requests in"
}
# Latency of one search at a time, then throughput with 16 connections: the first pass over the
# 809 queries embeds each one (cold), later passes find them in the query cache (warm).
run search-cold 1 search.lua 5s
run search 1 search.lua
run search 16 search.lua
# Whole answers at 1, 4 and 16 connections: the scheduler batches the answers in progress.
for clients in ${ANSWER_CLIENTS:-1 4 16}; do
  run "answers-$clients" "$clients" answer.lua "${ANSWER_DURATION:-60s}"
done
echo "== server peak memory: $(grep VmHWM /proc/$server/status | awk '{print $2/1024 " MiB"}')"
curl -s 127.0.0.1:18181/metrics | grep -E "^tributary_(answers|searches|overloaded)_total|^tributary_query_cache|^tributary_generator_"
