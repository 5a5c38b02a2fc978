"""The transformers + PEFT side of the GPU benchmark (issue #4, item 8), and its fixtures.

    python3 peer_gpu.py make WORK        # random Qwen2.5-0.5B-shaped model + 32 rank-16 adapters
    python3 peer_gpu.py reference WORK   # fp32 logits of a 2-row mixed-adapter batch -> WORK/reference.json
    python3 peer_gpu.py bench WORK       # tokens/s and TTFT with 1, 8, 32 distinct adapters in one batch

Prompt tokens follow the same formula as benches/gpu/src/main.rs, so both engines read the same
input. Prints one JSON line per measurement.
"""

import json
import sys
import time

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

ADAPTERS = 32
RANK = 16
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def prompt_tokens(row, length, vocab):
    return [(row * 7919 + i * 104729) % (vocab - 1000) + 500 for i in range(length)]


def make(work):
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config).to(torch.float32)
    # Random init leaves the q/k/v biases at zero; give them values so the bias path is checked.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("_proj.bias"):
                param.normal_(0, 0.02)
    model.save_pretrained(f"{work}/model")
    lora = LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=MODULES, lora_dropout=0.0)
    peft = get_peft_model(model, lora, adapter_name="a0")
    for i in range(1, ADAPTERS):
        peft.add_adapter(f"a{i}", lora)
    # PEFT starts B at zero (a no-op adapter): random factors make each adapter differ.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    peft.save_pretrained(f"{work}/adapters")  # one subdirectory per adapter name
    print(json.dumps({"job": "make", "params": sum(p.numel() for p in model.parameters())}))


def load(work, dtype, names):
    model = Qwen2ForCausalLM.from_pretrained(f"{work}/model", dtype=dtype).cuda().eval()
    peft = PeftModel.from_pretrained(model, f"{work}/adapters/{names[0]}", adapter_name=names[0])
    for name in names[1:]:
        peft.load_adapter(f"{work}/adapters/{name}", adapter_name=name)
    peft.eval()
    return peft


def reference(work):
    torch.backends.cuda.matmul.allow_tf32 = False
    names = ["a0", "a1"]
    peft = load(work, torch.float32, names)
    tokens = [prompt_tokens(r, 16, 151936) for r in range(2)]
    with torch.no_grad():
        out = peft(input_ids=torch.tensor(tokens).cuda(), adapter_names=names)
    logits = out.logits[:, -1, :].float().cpu().tolist()
    with open(f"{work}/reference.json", "w") as f:
        json.dump({"tokens": tokens, "adapters": names, "logits": logits}, f)
    print(json.dumps({"job": "reference", "rows": 2, "vocab": len(logits[0])}))


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(work, rows=32, distinct=(1, 8, 32), prompt_len=128, new_tokens=64):
    start = time.perf_counter()
    peft = load(work, torch.bfloat16, [f"a{i}" for i in range(max(distinct))])
    load_s = time.perf_counter() - start
    input_ids = torch.tensor([prompt_tokens(r, prompt_len, 151936) for r in range(rows)]).cuda()
    mask = torch.ones_like(input_ids)

    def generate(n, tokens):
        kwargs = {}
        if n == 1:
            peft.set_adapter("a0")  # one adapter: PEFT's ordinary path, no per-row routing
        else:
            kwargs["adapter_names"] = [f"a{r % n}" for r in range(rows)]
        with torch.no_grad():
            peft.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
                do_sample=False, pad_token_id=0, eos_token_id=None, **kwargs,
            )

    generate(max(distinct), 4)  # warm-up
    for n in distinct:
        ttft = min(timed(lambda: generate(n, 1)) for _ in range(3))
        total = min(timed(lambda: generate(n, new_tokens)) for _ in range(3))
        print(json.dumps({
            "job": "bench", "engine": "transformers+peft", "dtype": "bf16", "rows": rows,
            "distinct_adapters": n, "prompt_len": prompt_len, "new_tokens": new_tokens, "load_s": load_s,
            "ttft_ms": ttft * 1e3, "total_s": total, "tokens_per_s": rows * new_tokens / total,
            "decode_tokens_per_s": rows * (new_tokens - 1) / (total - ttft),
        }), flush=True)


if __name__ == "__main__":
    import peft as peft_module
    import transformers

    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft_module.__version__, "gpu": torch.cuda.get_device_name(0)}), flush=True)
    {"make": make, "reference": reference, "bench": bench}[sys.argv[1]](sys.argv[2])
