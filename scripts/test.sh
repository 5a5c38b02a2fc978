#!/usr/bin/env bash
# Every test: formatting, lints, the supply-chain check (scripts/deny.sh), and the test suites
# of all crates (SQLite and PostgreSQL).
set -euo pipefail
source "$(dirname "$0")/env.sh"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432/test}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/deny.sh
cargo nextest run --workspace --locked --no-fail-fast
