#!/usr/bin/env bash
# Crash injection, the long version (issue #24): ingest, paid answers, and settle with batch
# payouts, each SIGKILLed at seeded random moments, TRIALS times per workload (default 100; CI
# runs 3 each inside `scripts/test.sh`). Prints one JSON line of figures per workload and
# writes them to target/crash-report.jsonl; benches/RESULTS.md records them.
#   scripts/crash.sh [TRIALS] [SEED]
set -euo pipefail
source "$(dirname "$0")/env.sh"
export TRIBUTARY_CRASH_TRIALS="${1:-100}"
export TRIBUTARY_CRASH_SEED="${2:-24}"
export TRIBUTARY_CRASH_REPORT="$PWD/target/crash-report.jsonl"
mkdir -p target
rm -f "$TRIBUTARY_CRASH_REPORT"
# One workload at a time: each trial's kill moment is drawn from an uninterrupted run's length,
# which other work on the cores would stretch.
cargo nextest run -p tributary --test it --locked --test-threads 1 --no-fail-fast \
    --success-output final -E 'test(/^crash::/)'
echo "== crash injection: $TRIBUTARY_CRASH_TRIALS trials per workload, seed $TRIBUTARY_CRASH_SEED"
cat "$TRIBUTARY_CRASH_REPORT"
