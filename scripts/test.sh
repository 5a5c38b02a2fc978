#!/usr/bin/env bash
# Every test: formatting, lints, the supply-chain check (scripts/deny.sh), and the test suites
# of all crates (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export TRIBUTARY_EMBED_MODEL="$PWD/models/all-MiniLM-L6-v2"
export TRIBUTARY_LLM="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$PWD/models/onnxruntime/libonnxruntime.so}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432/test}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/deny.sh
cargo nextest run --workspace --locked --no-fail-fast
