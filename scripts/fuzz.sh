#!/usr/bin/env bash
# Fuzzing (issue #24, suite 3): builds the cargo-fuzz targets in fuzz/ and runs each for
# SECONDS (default 120), starting from the committed seeds in fuzz/seeds/<target>/. Prints each
# target's executions and findings (also target/fuzz-<target>.log); benches/RESULTS.md records
# them. A crash leaves its input in fuzz/artifacts/<target>/: copy it to
# fuzz/regressions/<target>/, which CI replays (api/tests/it/fuzz.rs, the targets' short
# version: seeds, regressions and seeded mutations through the same checks, fuzz/checks.rs).
# Built with coverage instrumentation and no sanitizer (the fuzzed code is safe Rust; panics
# and failed assertions are the findings). Needs a nightly toolchain (present on these
# machines; `rustup toolchain install nightly` elsewhere) and cargo-fuzz (installed here from
# crates.io). These guided runs are not part of CI: the instrumented build of the dependency
# tree alone takes about 40 minutes on 2 cores.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz --version 0.13.2
fi
mkdir -p target
cd fuzz
cargo +nightly fuzz build --sanitizer none -O
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
  status=0
  cargo +nightly fuzz run --sanitizer none -O "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 > "../target/fuzz-$target.log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "../target/fuzz-$target.log" | grep -o '[0-9]*$' || echo "?")
  echo "[fuzz] $target: $runs executions in ${seconds}s, exit $status$( [ $status -ne 0 ] && echo ": FINDING, see target/fuzz-$target.log and fuzz/artifacts/$target/")"
done
