#!/usr/bin/env bash
# The main job: set up, build, and run `tributary demo` on a fresh data directory.
set -euo pipefail
source "$(dirname "$0")/env.sh"
export TRIBUTARY_DATA_DIR="${TRIBUTARY_DATA_DIR:-$PWD/tributary-data}"
cargo run --locked --quiet -p tributary -- demo
