#!/usr/bin/env python3
# Copyright 2026 Tributary contributors. Licensed under the Apache License, Version 2.0.
"""Validate a factual QA set in the layout of benches/data/facts/ (standard library only).

Usage: python3 benches/data/facts/check.py [SET_DIR]   (default: this script's directory)
SET_DIR/expect.json says what the set promises: the number of documents, the id prefix, the
least number of questions and the least per group of kinds.
Exits 1 and lists the problems when any hard check fails; prints warnings and
summary counts otherwise.
"""
import json
import os
import re
import sys
from collections import Counter

HERE = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(HERE, "documents")
KINDS = {"number", "date", "quantity", "name", "money", "percent", "duration"}
ADDRESSES = {"0x" + c * 40 for c in "1234"}
FIELDS = {"id", "question", "answer", "alternatives", "kind", "document", "distractors"}
with open(os.path.join(HERE, "expect.json"), encoding="utf-8") as f:
    EXPECT = json.load(f)
# minimum number of questions per group of kinds
MINIMA = [(tuple(kinds), n) for kinds, n in EXPECT["minimum_per_kinds"]]
MIN_QUESTIONS = EXPECT["minimum_questions"]
NEAR_CHARS = 800  # a distractor farther than this from every answer occurrence draws a warning

errors = []
warnings = []


def err(msg):
    errors.append(msg)


def positions(text, s):
    return [m.start() for m in re.finditer(re.escape(s), text)]


# --- documents -------------------------------------------------------------
docs = {}
for name in sorted(os.listdir(DOCS)):
    if not name.endswith(".md"):
        continue
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        text = f.read()
    docs[name] = text
    lines = text.split("\n")
    if not lines[0].startswith("# "):
        err(f"{name}: first line is not a '# Title'")
    body = "\n".join(lines[1:]).strip()
    paragraphs = [p for p in re.split(r"\n\s*\n", body) if p.strip()]
    words = len(text.split())
    if not 180 <= words <= 350:
        err(f"{name}: {words} words, expected 180-350")
    if not 2 <= len(paragraphs) <= 4:
        err(f"{name}: {len(paragraphs)} paragraphs, expected 2-4")
if len(docs) != EXPECT["documents"]:
    warnings.append(f"{len(docs)} documents ({EXPECT['documents']} planned)")

# --- contributors ----------------------------------------------------------
with open(os.path.join(HERE, "contributors.json"), encoding="utf-8") as f:
    contributors = json.load(f)
for name in docs:
    if name not in contributors:
        err(f"{name}: no contributor in contributors.json")
for name, addr in contributors.items():
    if name not in docs:
        err(f"contributors.json: {name} is not a document")
    if addr not in ADDRESSES:
        err(f"contributors.json: {name} has unexpected address {addr}")
per_contributor = Counter(contributors.values())

# --- questions -------------------------------------------------------------
questions = []
with open(os.path.join(HERE, "questions.jsonl"), encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            questions.append(json.loads(line))
        except json.JSONDecodeError as e:
            err(f"questions.jsonl line {n}: bad JSON ({e})")

ids = Counter(q.get("id") for q in questions)
for i, c in ids.items():
    if c > 1:
        err(f"id {i} used {c} times")

kinds = Counter()
per_doc = Counter()
cross_doc = []
for q in questions:
    qid = q.get("id", "?")
    missing = FIELDS - set(q) - {"alternatives"}
    if missing:
        err(f"{qid}: missing fields {sorted(missing)}")
        continue
    prefix = EXPECT["id_prefix"]
    if not re.fullmatch(re.escape(prefix) + r"\d{2,3}", qid):
        err(f"{qid}: id should look like {prefix}01")
    kind, doc, answer = q["kind"], q["document"], q["answer"]
    alts = q.get("alternatives", [])
    dis = q["distractors"]
    if kind not in KINDS:
        err(f"{qid}: unknown kind {kind!r}")
    kinds[kind] += 1
    if doc not in docs:
        err(f"{qid}: document {doc} does not exist")
        continue
    per_doc[doc] += 1
    text = docs[doc]
    if not isinstance(answer, str) or not answer:
        err(f"{qid}: empty answer")
        continue
    if answer not in text:
        err(f"{qid}: answer {answer!r} not verbatim in {doc}")
    if answer in q["question"]:
        err(f"{qid}: the question contains its own answer")
    if q["question"].rstrip("?").strip() in text:
        err(f"{qid}: the question is copied verbatim from {doc}")
    if not isinstance(alts, list) or not all(isinstance(a, str) and a for a in alts):
        err(f"{qid}: alternatives must be a list of non-empty strings")
        alts = []
    if not isinstance(dis, list) or not 1 <= len(dis) <= 4:
        err(f"{qid}: expected 1-4 distractors")
        dis = dis if isinstance(dis, list) else []
    if len(set(dis)) != len(dis):
        err(f"{qid}: repeated distractor")
    accepted = [answer] + alts
    for d in dis:
        if not isinstance(d, str) or not d:
            err(f"{qid}: empty distractor")
            continue
        if d not in text:
            err(f"{qid}: distractor {d!r} not verbatim in {doc}")
        if d in accepted:
            err(f"{qid}: distractor {d!r} is also an accepted answer")
        # a lenient (substring) grader must not accept a distractor, nor the reverse
        for a in accepted:
            if a in d or d in a:
                err(f"{qid}: accepted form {a!r} and distractor {d!r} overlap as substrings")
        apos, dpos = positions(text, answer), positions(text, d)
        if apos and dpos:
            gap = min(abs(x - y) for x in apos for y in dpos)
            if gap > NEAR_CHARS:
                warnings.append(f"{qid}: distractor {d!r} is {gap} chars from the answer")
    others = [n for n, t in docs.items() if n != doc and answer in t]
    if others:
        cross_doc.append(f"{qid}: answer {answer!r} also occurs in {', '.join(others)}")

for name in docs:
    if per_doc[name] == 0:
        err(f"{name}: no questions")

if len(questions) < MIN_QUESTIONS:
    err(f"{len(questions)} questions, expected at least {MIN_QUESTIONS}")
for group, minimum in MINIMA:
    got = sum(kinds[k] for k in group)
    if got < minimum:
        err(f"{'+'.join(group)}: {got} questions, expected at least {minimum}")

# --- report ----------------------------------------------------------------
print(f"documents: {len(docs)}")
print(f"questions: {len(questions)}")
print("per kind: " + ", ".join(f"{k}={kinds[k]}" for k in sorted(KINDS)))
print("per contributor: " + ", ".join(f"{a[:6]}..={c}" for a, c in sorted(per_contributor.items())))
print(f"questions per document: min={min(per_doc.values(), default=0)} max={max(per_doc.values(), default=0)}")
if cross_doc:
    print(f"info: {len(cross_doc)} answers also occur verbatim in another document (cross-document traps):")
    for line in cross_doc:
        print("  " + line)
for w in warnings:
    print("warning: " + w)
if errors:
    for e in errors:
        print("ERROR: " + e)
    print(f"FAILED: {len(errors)} error(s)")
    sys.exit(1)
print("OK")
