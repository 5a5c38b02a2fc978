#!/usr/bin/env bash
# Answer quality on the project's factual QA dev set (benches/data/facts): its documents are
# ingested into a fresh data directory under their contributors, every question is answered
# greedily with the default model, and `tributary eval` reports answers right and cited,
# citation precision and recall, what the fact check caught, and wrong facts marked grounded.
#   benches/facts.sh [extra `tributary eval` flags, e.g. --limit 10 or --llm-url URL]
#   FACTS_SET=benches/data/facts-heldout2 benches/facts.sh   (the held-out set)
#   FACTS_INGEST="--chunk-tokens 64 --overlap-tokens 8" benches/facts.sh   (other ingest flags)
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
set_dir=${FACTS_SET:-benches/data/facts}
python3 benches/data/facts/check.py "$set_dir" >/dev/null
cargo build --locked -p tributary
bin=target/debug/tributary
data=target/bench-data/$(basename "$set_dir")
rm -rf "$data"
mkdir -p "$data"
export TRIBUTARY_DATA_DIR="$PWD/$data"
unset DATABASE_URL
"$bin" datanet create facts --description "Factual QA dev set (benches/data/facts)" >/dev/null
# One ingest per contributor, with that contributor's documents.
for contributor in $(python3 -c "import json,sys; print(' '.join(sorted(set(json.load(open(sys.argv[1])).values()))))" "$set_dir/contributors.json"); do
  files=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(' '.join(sys.argv[2]+'/documents/'+f for f,c in sorted(m.items()) if c==sys.argv[3]))" \
    "$set_dir/contributors.json" "$set_dir" "$contributor")
  # shellcheck disable=SC2086 # word splitting of the file list and FACTS_INGEST is wanted
  "$bin" ingest --datanet facts --contributor "$contributor" --license Apache-2.0 ${FACTS_INGEST:-} $files >/dev/null
done
"$bin" eval --datanet facts --questions "$set_dir/questions.jsonl" --out "$data/results.jsonl" "$@"
echo "per-question results: $data/results.jsonl"
