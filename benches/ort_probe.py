"""Probe: would ONNX Runtime make our embedder faster? Exports all-MiniLM-L6-v2 to ONNX with
torch.onnx and times ONNX Runtime against torch on the same padded batches, plus one short query.
Informs the choice of an ORT (`fastembed`) embedding backend; see benches/RESULTS.md.

    .venv-bench/bin/pip install onnxruntime onnx
    HF_HUB_OFFLINE=1 .venv-bench/bin/python benches/ort_probe.py [MODEL_DIR] [CORPUS_JSONL]
"""
import json
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoModel, AutoTokenizer

model_dir = sys.argv[1] if len(sys.argv) > 1 else "models/all-MiniLM-L6-v2"
corpus = sys.argv[2] if len(sys.argv) > 2 else "../shared/eval/scifact-dev/corpus.jsonl"
names = ["input_ids", "attention_mask", "token_type_ids"]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).eval()


class Wrapped(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.inner(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


example = tok(["hello world"] * 2, return_tensors="pt", padding=True)
path = tempfile.mkdtemp() + "/model.onnx"
torch.onnx.export(
    Wrapped(model),
    tuple(example[n] for n in names),
    path,
    input_names=names,
    output_names=["last_hidden_state"],
    dynamic_axes={n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]},
    opset_version=17,
    dynamo=False,
)
texts = [json.loads(line)["text"] for line, _ in zip(open(corpus), range(256))]
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
enc = tok(texts, truncation=True, max_length=256, padding=True, return_tensors="np")


def ort_rate(batch):
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        session.run(None, {n: enc[n][i : i + batch].astype(np.int64) for n in names})
    return len(texts) / (time.perf_counter() - start)


ort_rate(32)
print(f"onnxruntime: {ort_rate(32):.1f} sequences/s (256 abstracts, batches of 32 padded to 256 tokens)")
with torch.inference_mode():
    start = time.perf_counter()
    for i in range(0, len(texts), 32):
        model(**{n: torch.from_numpy(enc[n][i : i + 32]).long() for n in names})
    print(f"torch:       {len(texts) / (time.perf_counter() - start):.1f} sequences/s (same batches)")
query = tok(["Vitamin D deficiency is linked to cardiovascular disease."], return_tensors="np")
feed = {n: query[n].astype(np.int64) for n in names}
for _ in range(5):
    session.run(None, feed)
start = time.perf_counter()
for _ in range(50):
    session.run(None, feed)
print(f"onnxruntime: one short query {(time.perf_counter() - start) / 50 * 1000:.2f} ms")
