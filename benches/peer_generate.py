"""Peer for benches/generate.sh: llama.cpp (llama-cpp-python) on the same GGUF file, same
prompt, same thread count, greedy. Prints one JSON line.

    .venv-bench/bin/python benches/peer_generate.py MODEL.gguf [TOKENS] [THREADS]
"""
import json
import sys
import time

import llama_cpp
from llama_cpp import Llama

model = sys.argv[1]
tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 128
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
# "plain": no extra buffer types (AMX tiles, repacked weights). On a CPU with AMX,
# llama-cpp-python 0.3.36 segfaults on the first multi-token batch of this Q4_1 model through
# them; generate.sh falls back to this then, and the output says so.
extra_bufts = not (len(sys.argv) > 4 and sys.argv[4] == "plain")
if not extra_bufts:
    default_params = llama_cpp.llama_model_default_params

    def plain_params():
        params = default_params()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_model_default_params = plain_params
    llama_cpp.llama.llama_cpp.llama_model_default_params = plain_params
llm = Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
messages = [{"role": "user", "content": "Write a long story about a river that flows through a forest and into the sea."}]


def run(max_tokens):
    start = time.perf_counter()
    first = None
    count = 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter() - start
            count += 1
    return first, count, time.perf_counter() - start


run(4)  # warm-up
llm.reset()
first, count, total = run(tokens)
print(json.dumps({
    "engine": "llama.cpp (llama-cpp-python)", "threads": threads, "extra_buffer_types": extra_bufts,
    "completion_pieces": count,
    "ttft_ms": first * 1e3, "decode_tokens_per_s": (count - 1) / (total - first),
}))
