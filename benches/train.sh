#!/usr/bin/env bash
# Model Factory on the factual QA dev set (benches/data/facts): its documents become a Datanet,
# its questions and answers the training pairs (no chunk ids: retrieval finds each pair's
# passage), 20% held out; `tributary adapter train` fine-tunes a LoRA adapter on SmolLM2 and
# reports held-out loss and answer F1 against the base, then the log is verified.
#   benches/train.sh [extra `adapter train` flags, e.g. --epochs 2 --rank 8]
# Then the attribution check: how often a training question's answer ranks its own example first.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
set_dir=${FACTS_SET:-benches/data/facts}
cargo build --locked -p tributary
bin=target/debug/tributary
data=target/bench-data/train-$(basename "$set_dir")
rm -rf "$data"
mkdir -p "$data"
export TRIBUTARY_DATA_DIR="$PWD/$data"
unset DATABASE_URL
"$bin" datanet create facts --description "Factual QA dev set (benches/data/facts)" >/dev/null
"$bin" ingest --datanet facts --contributor 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 --license Apache-2.0 \
  "$set_dir"/documents/*.md >/dev/null
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    if line.strip():
        q = json.loads(line)
        print(json.dumps({"question": q["question"], "answer": q["answer"]}))
' "$set_dir/questions.jsonl" > "$data/pairs.jsonl"
/usr/bin/time -v "$bin" adapter train facts-lora --datanet facts --pairs "$data/pairs.jsonl" "$@" 2> "$data/time.txt"
grep -E "Maximum resident|Elapsed" "$data/time.txt"
"$bin" adapter show facts-lora
"$bin" adapter verify facts-lora
# Training-data attribution: each training question asked as `ask` asks it; how often the
# adapter's answer ranks its own training example first (every fact is in one example).
"$bin" adapter influence facts-lora --datanet facts --check
