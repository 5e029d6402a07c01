"""Data for the late-interaction judge: texts encoded once through the frozen encoder (final token states,
cached on disk, resumable), word-piece idf, and the training / validation groups.

Only training and validation splits are read (see ../shared/data/README.md): msmarco-train-1k and the
msmarco-dev-sample train split, SQuAD (4 held-out articles validate), WikiQA train, SciFact train (a hashed
slice is held out) train; msmarco-dev-sample validation and nearmiss-val validate. Synthetic near-misses
(:func:`funnelrank.train.near_misses.make_near_misses`) are made from training positives only; a hashed
tenth of the training queries is held out so their near-misses validate too.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from funnelrank.train.data import Retrieval, _held_out, _read_jsonl, load_msmarco, load_scifact, load_squad, load_wikiqa

Q_TOKENS = 48
"""Word pieces a query is cut to (special tokens included)."""
P_TOKENS = 224
"""Word pieces a passage is cut to (special tokens included); a 256-token pair holds about this much."""


@dataclass
class Group:
    """One query with labelled passages (texts; 1 relevant, 0 not) from one source."""

    query: str
    passages: list[str]
    labels: list[int]
    source: str


@dataclass
class StateCache:
    """Final token states of texts encoded alone, keyed by the text itself."""

    ids: list[np.ndarray] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)
    index: dict[tuple[str, int], int] = field(default_factory=dict)

    def get(self, text: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
        i = self.index[(text, limit)]
        return self.ids[i], self.states[i]


def _key(text: str, limit: int) -> str:
    return hashlib.sha1(f"{limit}\x00{text}".encode()).hexdigest()


class TextEncoder:
    """Token states of texts encoded alone: a tokenizer (``tokenizers.Tokenizer``, padding off) and a frozen
    model mapping (ids, attention mask) of shape (B, L) to states (B, L, H).

    The default is the judge's own encoder, all-MiniLM-L6-v2 with every layer run per segment;
    :meth:`from_dir` loads any Hugging Face encoder directory (e.g. all-mpnet-base-v2 as a teacher)."""

    def __init__(self, tokenizer: Any, states: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.tokenizer = tokenizer
        self.states = states

    @classmethod
    def base(cls) -> "TextEncoder":
        """all-MiniLM-L6-v2, the pip-installed base the judge is built on."""
        from tokenizers import Tokenizer

        from funnelrank.train.model import SegmentCrossEncoder, base_model_dir

        tok = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
        tok.no_padding()
        enc = SegmentCrossEncoder.from_base(n_separate=6).eval()

        def states(ids: torch.Tensor, am: torch.Tensor) -> torch.Tensor:
            pos = torch.arange(ids.shape[1])[None, :].expand(ids.shape[0], -1)
            return enc.encode_segment(ids, am, pos, n_layers=6)

        return cls(tok, states)

    @classmethod
    def from_dir(cls, model_dir: Path) -> "TextEncoder":
        """A Hugging Face encoder directory (config, weights, tokenizer.json): its last hidden states."""
        from tokenizers import Tokenizer
        from transformers import AutoModel

        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tok.no_padding()
        model = AutoModel.from_pretrained(str(model_dir)).eval()

        def states(ids: torch.Tensor, am: torch.Tensor) -> torch.Tensor:
            return model(input_ids=ids, attention_mask=am).last_hidden_state

        return cls(tok, states)


def encode_all(texts: list[tuple[str, int]], work: Path, batch: int = 64,
               encoder: Callable[[], TextEncoder] = TextEncoder.base) -> StateCache:
    """Encode each (text, token limit) once with `encoder` (default: the frozen all-MiniLM-L6-v2, every layer,
    the text alone); states are stored as float16 in ``work/states-*.pt`` chunks, so an interrupted run
    resumes. `encoder` is only built when some text is not cached yet."""
    work.mkdir(parents=True, exist_ok=True)
    cache = StateCache()
    done: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for f in sorted(work.glob("states-*.pt")):
        done.update(torch.load(f, weights_only=False))
    todo = list(dict.fromkeys(t for t in texts if _key(*t) not in done))
    if todo:
        enc = encoder()
        tok = enc.tokenizer
        todo.sort(key=lambda t: len(t[0]))
        chunk: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        n_files = len(list(work.glob("states-*.pt")))
        for s in tqdm(range(0, len(todo), batch), desc="encode", unit="batch", mininterval=10):
            part = todo[s:s + batch]
            rows = []
            for text, limit in part:
                tok.enable_truncation(limit)
                rows.append(tok.encode(text).ids)
            n = max(len(r) for r in rows)
            ids = torch.zeros(len(rows), n, dtype=torch.int64)
            am = torch.zeros(len(rows), n, dtype=torch.int64)
            for r, row in enumerate(rows):
                ids[r, :len(row)] = torch.tensor(row)
                am[r, :len(row)] = 1
            with torch.no_grad():
                x = enc.states(ids, am)
            for r, (t, row) in enumerate(zip(part, rows)):
                chunk[_key(*t)] = (np.asarray(row, dtype=np.int32), x[r, :len(row)].numpy().astype(np.float16))
            if len(chunk) >= 4096 or s + batch >= len(todo):
                tmp = work / f"states-{n_files:04d}.pt.tmp"
                torch.save(chunk, tmp)
                tmp.replace(work / f"states-{n_files:04d}.pt")
                done.update(chunk)
                chunk, n_files = {}, n_files + 1
    for t in dict.fromkeys(texts):
        cache.index[t] = len(cache.ids)
        i, x = done[_key(*t)]
        cache.ids.append(i)
        cache.states.append(x)
    return cache


def wordpiece_idf(texts: list[str], vocab_size: int = 30522) -> np.ndarray:
    """BM25-style idf per word piece over `texts` (each text a document): log(1 + (N - df + 0.5) / (df + 0.5))."""
    from tokenizers import Tokenizer

    from funnelrank.train.model import base_model_dir

    tok = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
    tok.no_truncation()
    df = np.zeros(vocab_size, dtype=np.float64)
    for e in tok.encode_batch(texts, add_special_tokens=False):
        df[np.unique(np.asarray(e.ids, dtype=np.int64))] += 1
    n = len(texts)
    return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)


def idf_corpus(root: Path) -> list[str]:
    """The passages idf is counted over: web passages and Wikipedia paragraphs (no test corpus)."""
    texts = [d["text"] for d in _read_jsonl(root / "msmarco-dev-sample" / "corpus.jsonl")]
    texts += [d["text"] for d in _read_jsonl(root / "trec-dl22-unjudged" / "corpus.jsonl")]
    texts += [d["text"] for d in _read_jsonl(root / "msmarco-train-1k" / "corpus.jsonl")]
    squad = json.loads((root / "squad-v1.1-dev" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    texts += [p["context"] for a in squad for p in a["paragraphs"]]
    return texts


def msmarco_train_1k(root: Path) -> list[Group]:
    """994 MS MARCO train queries: (query, positive, BM25 negative) triples grouped by query."""
    base = root / "msmarco-train-1k"
    docs = {d["_id"]: d["text"] for d in _read_jsonl(base / "corpus.jsonl")}
    queries = {q["_id"]: q["text"] for q in _read_jsonl(base / "queries.jsonl")}
    groups: dict[str, Group] = {}
    with (base / "triples.tsv").open(encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t")
        for row in rows:
            if row[0] not in queries:
                continue
            g = groups.setdefault(row[0], Group(queries[row[0]], [], [], "msmarco-1k"))
            for did, lab in ((row[1], 1), (row[2], 0)):
                if did in docs and docs[did] not in g.passages:
                    g.passages.append(docs[did])
                    g.labels.append(lab)
    return [g for g in groups.values() if 1 in g.labels and 0 in g.labels]


def _retrieval_groups(ret: Retrieval, qids: list[str], name: str, depth: int = 20, bm: list[list[int]] | None = None) -> list[Group]:
    out = []
    pos_of = {d: i for i, d in enumerate(ret.doc_ids)}
    for n, q in enumerate(qids):
        rel = {d for d, g in ret.qrels[q].items() if g > 0}
        if ret.val_candidates is not None and q in ret.val_candidates:
            cands = [pos_of[d] for d in ret.val_candidates[q] if d in pos_of][:depth]
        else:
            assert bm is not None
            cands = bm[n][:depth]
        cand_ids = [ret.doc_ids[i] for i in cands]
        for d in sorted(rel):
            if d not in cand_ids and d in pos_of:
                cand_ids.append(d)
        out.append(Group(ret.queries[q], [ret.doc_texts[pos_of[d]] for d in cand_ids],
                         [int(d in rel) for d in cand_ids], name))
    return out


def msmarco_sample(root: Path, split: str) -> list[Group]:
    """msmarco-dev-sample `split` ("train" or "validation"): each judged query over Anserini's BM25 top 20."""
    ret = load_msmarco(root)
    qids = ret.train_qids if split == "train" else ret.val_qids
    return [g for g in _retrieval_groups(ret, qids, f"msmarco-{split}") if 1 in g.labels[:20]]


def _bm25_split_groups(ret: Retrieval, depth: int) -> tuple[list[Group], list[Group]]:
    """(training, validation) groups of a set with a corpus: each query over BM25's top `depth`."""
    from funnelrank.train.data import bm25_search

    out = []
    for qids in (ret.train_qids, ret.val_qids):
        bm = bm25_search(ret.doc_texts, [ret.queries[q] for q in qids], k=depth)
        out.append(_retrieval_groups(ret, qids, ret.name, depth, bm))
    return out[0], out[1]


def squad_groups(root: Path, n_train: int, n_val: int, depth: int) -> tuple[list[Group], list[Group]]:
    """SQuAD question -> paragraph; candidates are BM25's top over all paragraphs (held-out articles validate)."""
    return _bm25_split_groups(load_squad(root, n_train, n_val), depth)


def scifact_groups(root: Path, depth: int) -> tuple[list[Group], list[Group]]:
    """SciFact train queries over BM25's top; the hashed held-out slice validates."""
    return _bm25_split_groups(load_scifact(root), depth)


def wikiqa_groups(root: Path, split: str) -> list[Group]:
    """WikiQA questions with their candidate sentences (groups with a positive)."""
    return [Group(q, s, l, f"wikiqa-{split}") for q, s, l in load_wikiqa(root, split) if 1 in l and 0 in l]


def nearmiss_groups(path: Path) -> list[Group]:
    """nearmiss cases (:func:`funnelrank.eval.nearmiss.load_cases`) as groups: the answer first, then its
    near-misses."""
    from funnelrank.eval.nearmiss import load_cases

    return [Group(c.query, [c.pos, *c.neg], [1] + [0] * len(c.neg), path.name) for c in load_cases(path)]


def add_near_misses(groups: list[Group], per_positive: int, seed: int = 0) -> tuple[list[Group], list[Group]]:
    """For each group's positives, `per_positive` near-miss passages (word swaps) as extra negatives, and
    query-side swaps (the passage kept, one query word swapped) as separate groups with no positive.
    Returns (passage-side groups, query-side groups); each group keeps its original query."""
    from funnelrank.train.near_misses import make_near_misses
    from funnelrank.train.wordnet import load_wordnet

    wn = load_wordnet()
    rng = random.Random(seed)
    out, qside = [], []
    for g in tqdm(groups, desc="near-misses", unit="group", mininterval=10):
        pos = [p for p, lab in zip(g.passages, g.labels) if lab]
        extra = []
        for p in pos:
            extra += make_near_misses(g.query, p, wn, rng, limit=per_positive)
            for q2 in make_near_misses(g.query, g.query, wn, rng, limit=1):
                qside.append(Group(q2, [p], [0], g.source + "+qswap"))
        if extra:
            out.append(Group(g.query, pos + extra, [1] * len(pos) + [0] * len(extra), g.source + "+nm"))
    return out, qside


def held_out(g: Group, fraction: float = 0.1) -> bool:
    """The hashed slice of training queries kept out of training (their near-misses validate)."""
    return _held_out("judge" + g.query, fraction)


__all__ = ["Group", "StateCache", "encode_all", "wordpiece_idf", "idf_corpus", "msmarco_train_1k", "msmarco_sample",
           "squad_groups", "scifact_groups", "wikiqa_groups", "nearmiss_groups", "add_near_misses", "held_out",
           "Q_TOKENS", "P_TOKENS"]
