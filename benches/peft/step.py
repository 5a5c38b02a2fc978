"""One LoRA training step on the CPU with PEFT + transformers (PyTorch): the peer of
trainer/examples/step_speed.rs. Same model file (the SmolLM2-135M GGUF that TRIBUTARY_LLM names,
dequantized to f32 by transformers), same adapter (rank 16, alpha 32, every projection), same
rows (ROWS rows of LEN tokens, the loss on the last 20), forward and backward twice (the first
warms up). Prints the measured pass as step_speed.rs does.
"""

import os
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

path = os.environ["TRIBUTARY_LLM"]
length = int(os.environ.get("LEN", "300"))
rows = int(os.environ.get("ROWS", "1"))
torch.set_num_threads(os.cpu_count() or 1)
model = AutoModelForCausalLM.from_pretrained(
    os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32
)
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")
model = get_peft_model(model, config)
model.train()
ids = torch.tensor([[(i * 37 + 11) % 49_000 for i in range(length)]] * rows)
labels = ids.clone()
labels[:, : max(length - 20, 0)] = -100
for name in ("warm-up", "measured"):
    started = time.perf_counter()
    loss = model(input_ids=ids, labels=labels).loss
    forward = time.perf_counter() - started
    loss.backward()
    model.zero_grad(set_to_none=True)
    total = time.perf_counter() - started
    print(f"{name}: forward {forward:.2f}s, backward {total - forward:.2f}s, {length * rows / total:.0f} tokens/s")
