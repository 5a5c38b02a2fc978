"""The Python speed peer for benches/speed.sh, on the same chunk texts and queries as ours:
ingest = sentence-transformers `encode` alone (chunks/s); search = query embedding + chromadb
(embedded, HNSW) top 100 + bm25s top 100 + convex fusion of min-max-normalized scores.

    python benches/peer_speed.py CHUNKS.jsonl QUERIES.jsonl MODEL_DIR [SEARCHES]
Prints one JSON line.
"""
import json
import resource
import sys
import tempfile
import time

import bm25s
import chromadb
import numpy as np
import Stemmer
from sentence_transformers import SentenceTransformer

chunks_path, queries_path, model_dir = sys.argv[1:4]
searches = int(sys.argv[4]) if len(sys.argv) > 4 else 200
chunks = [json.loads(line) for line in open(chunks_path)]
ids = [c["id"] for c in chunks]
texts = [c["text"] for c in chunks]
queries = [json.loads(line)["text"] for line in open(queries_path)]

model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:64], batch_size=32)  # warm-up
start = time.perf_counter()
vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
encode_s = time.perf_counter() - start

client = chromadb.PersistentClient(path=tempfile.mkdtemp())
collection = client.create_collection("speed", metadata={"hnsw:space": "cosine"})
for i in range(0, len(ids), 5000):
    collection.add(ids=ids[i : i + 5000], embeddings=vectors[i : i + 5000].tolist())
stemmer = Stemmer.Stemmer("english")
bm25 = bm25s.BM25()
bm25.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
position = {c: n for n, c in enumerate(ids)}


def minmax(scores):
    lo, hi = min(scores.values()), max(scores.values())
    return {k: (v - lo) / (hi - lo) if hi > lo else 1.0 for k, v in scores.items()}


def search(text):
    q = model.encode([text], normalize_embeddings=True)
    dense = collection.query(query_embeddings=q.tolist(), n_results=100)
    dense_scores = {i: 1.0 - d for i, d in zip(dense["ids"][0], dense["distances"][0])}
    docs, scores = bm25.retrieve(
        bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False), k=100, show_progress=False
    )
    sparse_scores = {ids[d]: float(s) for d, s in zip(docs[0], scores[0])}
    dn, sn = minmax(dense_scores), minmax(sparse_scores)
    fused = {k: 0.5 * dn.get(k, 0.0) + 0.5 * sn.get(k, 0.0) for k in set(dn) | set(sn)}
    return sorted(fused.items(), key=lambda kv: -kv[1])[:10]


latencies = []
for i in range(searches + 10):
    t = time.perf_counter()
    search(queries[i % len(queries)])
    if i >= 10:
        latencies.append((time.perf_counter() - t) * 1000)
latencies.sort()
print(
    json.dumps(
        {
            "system": "python: sentence-transformers encode; chromadb + bm25s search",
            "chunks": len(texts),
            "ingest_seconds": encode_s,
            "ingest_chunks_per_s": len(texts) / encode_s,
            "search_p50_ms": float(np.percentile(latencies, 50)),
            "search_p99_ms": float(np.percentile(latencies, 99)),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
)
