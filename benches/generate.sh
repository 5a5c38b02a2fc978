#!/usr/bin/env bash
# Generator speed: us (candle, benches/src/bin/generate.rs) and llama.cpp on the same GGUF, the
# same prompt and the same number of threads, in one run; plus our adapter latencies and
# mixed-adapter batch throughput.
#   benches/generate.sh [TOKENS]     (default 128)
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-128}
threads=$(nproc)
scripts/setup.sh
if [ ! -x .venv-bench/bin/python ]; then python3 -m venv .venv-bench; fi
# llama-cpp-python compiles llama.cpp from source the first time (about 20 minutes on 2 cores),
# for this CPU (GGML_NATIVE): never from pip's wheel cache, which may hold a build for another
# machine's CPU (one such wheel segfaulted here on its first multi-token batch).
.venv-bench/bin/python -c 'import llama_cpp' 2>/dev/null ||
  .venv-bench/bin/pip install --quiet --disable-pip-version-check --no-cache-dir llama-cpp-python
model="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
cargo build --locked -q -p tributary-benches --bin generate
ours=$(RAYON_NUM_THREADS=$threads target/debug/generate --model "$model" --tokens "$tokens")
peer=$(.venv-bench/bin/python benches/peer_generate.py "$model" "$tokens" "$threads" | tail -n1) ||
  peer=$(.venv-bench/bin/python benches/peer_generate.py "$model" "$tokens" "$threads" plain | tail -n1)
echo "ours: $ours"
echo "peer: $peer"
python3 - "$ours" "$peer" <<'PY'
import json, sys
o, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
plain = "" if p.get("extra_buffer_types", True) else " (without its extra buffer types: they crashed here)"
print(f"decode tok/s        ours {o['decode_tokens_per_s']:.1f}  llama.cpp{plain} {p['decode_tokens_per_s']:.1f}  ratio {o['decode_tokens_per_s']/p['decode_tokens_per_s']:.2f}x")
if "decode_tokens_per_s_candle_ops" in o:
    print(f"decode tok/s        ours through candle's ops {o['decode_tokens_per_s_candle_ops']:.1f} (fused step: {o.get('fused_decode')})")
print(f"time to first token ours {o['ttft_ms']:.0f} ms  llama.cpp {p['ttft_ms']:.0f} ms")
print(f"adapter rank {o['adapter_rank']}: cold load {o['adapter_cold_load_ms_median']:.1f} ms, hot switch {o['adapter_hot_switch_ms_median']*1000:.2f} us, {o['adapter_bytes']/2**20:.1f} MiB loaded, first token with it {o['ttft_ms_with_adapter']:.0f} ms")
print(f"batch of {o['batch_rows']}: base {o['batch_tokens_per_s_base']:.1f} tok/s, one adapter {o['batch_tokens_per_s_same_adapter']:.1f}, mixed {o['batch_tokens_per_s_mixed_adapters']:.1f} (mixed/one {o['mixed_over_same']:.2f})")
PY
