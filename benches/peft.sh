#!/usr/bin/env bash
# LoRA training step speed on this CPU: tributary-trainer (candle, trainer/examples/step_speed.rs)
# against PEFT + transformers (PyTorch, benches/peft/step.py) in the same invocation, on the same
# model file, adapter and rows; prints each side's tokens/s and the ratio (target >= 1.0x).
#   benches/peft.sh            # 300-token rows, 1 and 4 rows a pass
# The peer's Python environment (torch, transformers, peft, gguf from PyPI; torch's wheel brings
# the CUDA libraries, several GB) is made in target/peft-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
venv=${PEFT_VENV:-target/peft-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers, peft, gguf" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers peft gguf accelerate
fi
cargo build -q -p tributary-trainer --example step_speed
echo "host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
len=${LEN:-300}
for rows in ${ROWS_LIST:-1 4}; do
  ours=$(LEN=$len ROWS=$rows cargo run -q -p tributary-trainer --example step_speed | sed -n 's/^measured: .* \([0-9]*\) tokens\/s$/\1/p')
  peer=$(LEN=$len ROWS=$rows "$venv/bin/python" benches/peft/step.py 2>/dev/null | sed -n 's/^measured: .* \([0-9]*\) tokens\/s$/\1/p')
  ratio=$(python3 -c "print(f'{$ours / $peer:.2f}')")
  echo "rows $rows x $len tokens: tributary-trainer $ours tokens/s, PEFT + transformers $peer tokens/s: ${ratio}x"
done
