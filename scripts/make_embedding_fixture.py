"""Writes indexer/tests/fixtures/minilm_reference.json: sentence-transformers' own embeddings of
a few texts, the reference the candle embedder is tested against (cosine >= 0.999).

Run with a Python that has sentence-transformers (the benchmark venv, .venv-bench):
    .venv-bench/bin/python scripts/make_embedding_fixture.py
"""
import json
import os
import sys

from sentence_transformers import SentenceTransformer

model_dir = sys.argv[1] if len(sys.argv) > 1 else "models/all-MiniLM-L6-v2"
texts = [
    "A tributary is a stream or river that flows into a larger river.",
    "Discharge is the volume of water passing a cross-section per unit of time.",
    "short",
    "Ünïcödé, punctuation — and numbers: 3.14159 (pi) & 2.71828 (e)!",
    "Vitamin D deficiency is associated with an increased risk of cardiovascular disease. " * 40,
    "Rain that falls on one side of a divide flows to one river system.\nRain on the other side flows to another.",
]
model = SentenceTransformer(model_dir, device="cpu")
vectors = model.encode(texts, normalize_embeddings=True, batch_size=8)
out = {
    "model": "sentence-transformers/all-MiniLM-L6-v2",
    "generator": "sentence-transformers " + __import__("sentence_transformers").__version__,
    "items": [{"text": t, "vector": [round(float(x), 7) for x in v]} for t, v in zip(texts, vectors)],
}
path = os.path.join("indexer", "tests", "fixtures", "minilm_reference.json")
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", path)
