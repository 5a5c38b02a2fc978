#!/usr/bin/env bash
# Every test: formatting, lints, the supply-chain check (scripts/deny.sh), the test suites
# of all crates (SQLite and PostgreSQL), and the web app in headless Chromium
# (scripts/web-test.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432/test}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/deny.sh
cargo nextest run --workspace --locked --no-fail-fast
scripts/web-test.sh
