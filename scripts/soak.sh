#!/usr/bin/env bash
# Soak, the long version (issue #24): `tributary serve` under a mix of uploads, searches and
# paid answers for SECONDS (default 600; CI runs 20 inside `scripts/test.sh`), resident memory
# sampled every 2 s and required flat, no errors but deliberate 429/503s, the books balanced
# after. Prints one JSON line of figures (also in target/soak-report.json); benches/RESULTS.md
# records them.
#   scripts/soak.sh [SECONDS]
set -euo pipefail
source "$(dirname "$0")/env.sh"
export TRIBUTARY_SOAK_SECS="${1:-600}"
export TRIBUTARY_SOAK_REPORT="$PWD/target/soak-report.json"
mkdir -p target
cargo nextest run -p tributary --test it --locked --no-fail-fast --success-output final \
    -E 'test(/^soak::/)'
cat "$TRIBUTARY_SOAK_REPORT"
