"""Peer for benches/batching.sh: llama.cpp (llama-cpp-python) on the same GGUF, the same chat
prompts (written by `batching --dump-prompts`), the same threads, greedy, at most MAX_TOKENS new
tokens. llama.cpp's Python server answers one request at a time, so its answers/s is the same
at any number of clients; this runs the prompts one after another and prints one JSON line.

    .venv-bench/bin/python benches/peer_batching.py MODEL.gguf PROMPTS.json [ANSWERS] [MAX_TOKENS] [THREADS]
"""
import json
import sys
import time

from llama_cpp import Llama

model, prompts_path = sys.argv[1], sys.argv[2]
answers = int(sys.argv[3]) if len(sys.argv) > 3 else 16
max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 64
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
prompts = json.load(open(prompts_path))
llm = Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
llm.create_chat_completion(messages=prompts[-1], max_tokens=2, temperature=0.0)  # warm-up

latencies, ttfts, prompt_rates, generated, prompt_tokens = [], [], [], 0, 0
started = time.perf_counter()
for messages in prompts[:answers]:
    llm.reset()  # no prefix reuse between different prompts
    asked = time.perf_counter()
    first = None
    count = 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter() - asked
            count += 1
    total = time.perf_counter() - asked
    n_prompt = len(llm.tokenize(llm.detokenize(llm._input_ids[: llm.n_tokens - count]), add_bos=False, special=True))
    latencies.append(total)
    ttfts.append(first or total)
    prompt_rates.append(n_prompt / (first or total))
    generated += count
    prompt_tokens += n_prompt
wall = time.perf_counter() - started


def pct(values, p):
    values = sorted(values)
    return values[round((len(values) - 1) * p)]


print(json.dumps({
    "engine": "llama.cpp (llama-cpp-python)", "threads": threads, "answers": len(latencies),
    "answers_per_s": len(latencies) / wall,
    "latency_p50_s": pct(latencies, 0.5), "latency_p99_s": pct(latencies, 0.99),
    "ttft_p50_ms": pct(ttfts, 0.5) * 1e3, "ttft_p99_ms": pct(ttfts, 0.99) * 1e3,
    "prompt_tokens_per_s_p50": pct(prompt_rates, 0.5),
    "prompt_tokens_mean": prompt_tokens / len(latencies),
    "completion_pieces_mean": generated / len(latencies),
}))
