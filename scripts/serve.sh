#!/usr/bin/env bash
# Serves the API and the web app (http://127.0.0.1:8080/) over the data directory the demo
# filled (./tributary-data, or TRIBUTARY_DATA_DIR). Extra arguments go to `tributary serve`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
export TRIBUTARY_DATA_DIR="${TRIBUTARY_DATA_DIR:-$PWD/tributary-data}"
exec cargo run --locked --quiet -p tributary -- serve "$@"
