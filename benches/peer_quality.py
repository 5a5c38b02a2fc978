"""The Python retrieval peer for benches/quality.sh: bm25s (stemmed, English stopwords) and
sentence-transformers all-MiniLM-L6-v2, fused by a convex combination of min-max-normalized
scores (and by RRF), on a BEIR-layout dataset. Writes TREC runs (top 100 documents a query).

    python benches/peer_quality.py DATASET_DIR MODEL_DIR OUT_DIR [ALPHA]
"""
import json
import os
import sys

import bm25s
import numpy as np
import Stemmer
from sentence_transformers import SentenceTransformer

dataset, model_dir, out_dir = sys.argv[1:4]
alpha = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
os.makedirs(out_dir, exist_ok=True)

corpus = [json.loads(line) for line in open(os.path.join(dataset, "corpus.jsonl"))]
ids = [str(d["_id"]) for d in corpus]
texts = [(d.get("title") or "") + " " + d["text"] for d in corpus]
judged = set()
with open(os.path.join(dataset, "qrels", "train.tsv")) as f:
    next(f)
    for line in f:
        judged.add(line.split("\t")[0])
queries = [json.loads(line) for line in open(os.path.join(dataset, "queries.jsonl"))]
queries = [q for q in queries if str(q["_id"]) in judged]

stemmer = Stemmer.Stemmer("english")
retriever = bm25s.BM25()
retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
query_tokens = bm25s.tokenize(
    [q["text"] for q in queries], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
)

model = SentenceTransformer(model_dir, device="cpu")
doc_vecs = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
query_vecs = model.encode([q["text"] for q in queries], batch_size=64, normalize_embeddings=True)


def minmax(x):
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.ones_like(x)


def rank(scores):
    return np.argsort(-scores, kind="stable")


runs = {"bm25s": [], "minilm": [], "hybrid-convex": [], "hybrid-rrf": []}
doc_index = {i: n for n, i in enumerate(ids)}
for qi, q in enumerate(queries):
    bm = retriever.get_scores(query_tokens[qi])
    dense = doc_vecs @ query_vecs[qi]
    fused = alpha * minmax(dense) + (1 - alpha) * minmax(bm)
    rb, rd = rank(bm), rank(dense)
    rrf = np.zeros(len(ids))
    rrf[rb] += 1.0 / (60 + np.arange(1, len(ids) + 1))
    rrf[rd] += 1.0 / (60 + np.arange(1, len(ids) + 1))
    for name, scores in (("bm25s", bm), ("minilm", dense), ("hybrid-convex", fused), ("hybrid-rrf", rrf)):
        top = rank(scores)[:100]
        runs[name].extend(f"{q['_id']} Q0 {ids[d]} {r + 1} {scores[d]:.6f} {name}" for r, d in enumerate(top))

for name, lines in runs.items():
    with open(os.path.join(out_dir, f"{name}.trec"), "w") as f:
        f.write("\n".join(lines) + "\n")
print(f"peer runs written to {out_dir} ({len(queries)} queries, alpha {alpha})")
