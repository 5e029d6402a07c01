"""Training data for the default cross-encoder: loading the shared training splits, encoding every text once
through the model's per-segment layers (cached on disk), mining hard negatives with BM25 and dense retrieval,
and building (query, positive, negatives) groups with bi-encoder teacher scores.

Only training splits are read: scifact train (a held-out slice validates), squad-v1.1-dev (held-out articles
validate), wikiqa train (wikiqa dev validates). Test splits and trec-dl19 are never touched.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

GROUP = 8  # 1 positive + 7 negatives per training group


@dataclass
class TextStore:
    """Unique texts by key ("q:..." queries, "p:..." passages), in the order they are encoded."""

    keys: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, text: str) -> int:
        if key not in self.index:
            self.index[key] = len(self.keys)
            self.keys.append(key)
            self.texts.append(text)
        return self.index[key]


def _held_out(key: str, fraction: float) -> bool:
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)
        for qid, did, score in rows:
            out.setdefault(qid, {})[did] = int(score)
    return out


@dataclass
class Retrieval:
    """A set with a corpus: queries, relevant docs, and the doc keys (for mining)."""

    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    train_qids: list[str]
    val_qids: list[str]
    val_candidates: dict[str, list[str]] | None = None
    """Validation candidates per query (default: BM25's top over `doc_texts`), e.g. a dataset's own run."""


def load_scifact(root: Path, val_fraction: float = 0.12) -> Retrieval:
    """scifact train queries; a hashed slice of them is held out for validation."""
    corpus = _read_jsonl(root / "scifact" / "corpus.jsonl")
    queries = {q["_id"]: q["text"] for q in _read_jsonl(root / "scifact" / "queries.jsonl")}
    qrels = _read_qrels(root / "scifact" / "qrels" / "train.tsv")
    qids = sorted(q for q in qrels if q in queries)
    return Retrieval(
        "scifact", [d["_id"] for d in corpus], [(d.get("title", "") + " " + d["text"]).strip() for d in corpus],
        {q: queries[q] for q in qids}, qrels,
        [q for q in qids if not _held_out("scifact" + q, val_fraction)],
        [q for q in qids if _held_out("scifact" + q, val_fraction)])


def load_msmarco(root: Path) -> Retrieval:
    """msmarco-dev-sample: the train split's queries train, the validation split's validate, each over its
    Anserini BM25 top 20 (``run.bm25.tsv``, what ``funnelrank eval --stages run,rerank`` reranks; kept as
    ``val_candidates`` for the queries of both splits)."""
    base = root / "msmarco-dev-sample"
    corpus = _read_jsonl(base / "corpus.jsonl")
    queries = {q["_id"]: q["text"] for q in _read_jsonl(base / "queries.jsonl")}
    train = _read_qrels(base / "qrels" / "train.tsv")
    val = _read_qrels(base / "qrels" / "validation.tsv")
    if set(train) & set(val):
        raise ValueError("msmarco-dev-sample: train and validation queries overlap")
    run: dict[str, list[str]] = {}
    with (base / "run.bm25.tsv").open(encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)
        for qid, did, _rank, _score in rows:
            run.setdefault(qid, []).append(did)
    train_q, val_q = sorted(q for q in train if q in queries), sorted(q for q in val if q in queries)
    keep = set(train_q) | set(val_q)
    return Retrieval(
        "msmarco", [d["_id"] for d in corpus], [(d.get("title", "") + " " + d["text"]).strip() for d in corpus],
        {q: queries[q] for q in keep}, {**train, **val}, train_q, val_q,
        val_candidates={q: run.get(q, [])[:20] for q in sorted(keep)})


def load_squad(root: Path, n_train: int, n_val: int, seed: int = 0) -> Retrieval:
    """squad-v1.1-dev: question -> the paragraph holding its answer; whole articles are held out for validation."""
    data = json.loads((root / "squad-v1.1-dev" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    doc_ids, doc_texts, queries, qrels, article = [], [], {}, {}, {}
    for a_i, art in enumerate(data):
        for p_i, par in enumerate(art["paragraphs"]):
            did = f"{a_i}_{p_i}"
            doc_ids.append(did)
            doc_texts.append(par["context"])
            for qa in par["qas"]:
                queries[qa["id"]] = qa["question"]
                qrels[qa["id"]] = {did: 1}
                article[qa["id"]] = a_i
    rng = random.Random(seed)
    val_articles = set(rng.sample(range(len(data)), 4))
    train = [q for q in queries if article[q] not in val_articles]
    val = [q for q in queries if article[q] in val_articles]
    rng.shuffle(train)
    rng.shuffle(val)
    train, val = train[:n_train], val[:n_val]
    keep = set(train) | set(val)
    return Retrieval("squad", doc_ids, doc_texts, {q: queries[q] for q in keep},
                     {q: qrels[q] for q in keep}, train, val)


def load_wikiqa(root: Path, split: str) -> list[tuple[str, list[str], list[int]]]:
    """wikiqa (question, candidate sentences, labels) groups, in file order."""
    d = root / "wikiqa" / split
    a = (d / "a.toks").read_text(encoding="utf-8").splitlines()
    b = (d / "b.toks").read_text(encoding="utf-8").splitlines()
    s = (d / "sim.txt").read_text(encoding="utf-8").splitlines()
    groups: dict[str, tuple[list[str], list[int]]] = {}
    for q, sent, lab in zip(a, b, s):
        g = groups.setdefault(q, ([], []))
        g[0].append(sent)
        g[1].append(int(float(lab)))
    return [(q, ss, ls) for q, (ss, ls) in groups.items()]


BM25_BACKEND = ""
"""Which BM25 the last `bm25_search` used (recorded in prepare_stats.json)."""


def bm25_search(doc_texts: list[str], queries: list[str], k: int) -> list[list[int]]:
    """Top-k doc positions per query with the project's BM25 (`funnelrank.core.BM25Index`) when it is built,
    else bm25s with the same Lucene-style scoring (k1=1.2, b=0.75, English stemming)."""
    global BM25_BACKEND
    try:
        from funnelrank.core import BM25Index
    except ImportError:
        BM25Index = None  # type: ignore[misc, assignment]
    BM25_BACKEND = "funnelrank.core.BM25Index" if BM25Index is not None else "bm25s (funnelrank core not built)"
    if BM25Index is not None:
        idx = BM25Index()
        idx.add([str(i) for i in range(len(doc_texts))], doc_texts)
        return [[int(i) for i in ids] for ids, _ in idx.search_batch(queries, k=k, threads=1)]
    import bm25s
    import Stemmer

    stem = Stemmer.Stemmer("english")
    retr = bm25s.BM25(k1=1.2, b=0.75)
    retr.index(bm25s.tokenize(doc_texts, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    res, _ = retr.retrieve(bm25s.tokenize(queries, stopwords="en", stemmer=stem, show_progress=False),
                           k=min(k, len(doc_texts)), show_progress=False, n_threads=1)
    return [list(map(int, r)) for r in res]
