"""`prepare`: load the training splits, encode every text once (cache.py), mine hard negatives with BM25 and
dense retrieval, and write training groups and validation sets as JSON in the work directory."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.train.cache import build_cache
from funnelrank.train.data import (
    GROUP,
    Retrieval,
    TextStore,
    bm25_search,
    load_msmarco,
    load_scifact,
    load_squad,
    load_wikiqa,
)
from funnelrank.train.model import SegmentCrossEncoder


def _dense_search(emb: np.ndarray, q_rows: list[int], d_rows: list[int], k: int) -> list[list[int]]:
    """Exact cosine top-k (positions into d_rows) for each query row."""
    d = emb[d_rows]
    out = []
    for s in range(0, len(q_rows), 512):
        sims = emb[q_rows[s:s + 512]] @ d.T
        top = np.argpartition(-sims, min(k, len(d_rows) - 1), axis=1)[:, :k]
        out.extend([list(t[np.argsort(-sims[r, t])]) for r, t in enumerate(top)])
    return out


def _retrieval_groups(ret: Retrieval, store: TextStore, emb: np.ndarray, rng: random.Random,
                      val_depth: int) -> tuple[list[dict], list[dict], dict]:
    """Training groups (1 positive + hard negatives from BM25 and dense) and validation candidate lists."""
    dkeys = [store.index[f"p:{ret.name}:{d}"] for d in ret.doc_ids]
    qids = ret.train_qids + ret.val_qids
    t0 = time.time()
    bm = bm25_search(ret.doc_texts, [ret.queries[q] for q in qids], k=max(30, val_depth))
    dense = _dense_search(emb, [store.index[f"q:{ret.name}:{q}"] for q in qids], dkeys, 30)
    from funnelrank.train import data as data_mod

    stats = {"mining_s": round(time.time() - t0, 1), "bm25": data_mod.BM25_BACKEND}
    train, val = [], []
    n_train = len(ret.train_qids)
    for n, q in enumerate(qids):
        rel = {d for d, g in ret.qrels[q].items() if g > 0}
        qk = store.index[f"q:{ret.name}:{q}"]
        if n >= n_train:
            if ret.val_candidates is not None:
                pos = {d: i for i, d in enumerate(ret.doc_ids)}
                picked = [pos[d] for d in ret.val_candidates.get(q, []) if d in pos][:val_depth]
            else:
                picked = bm[n][:val_depth]
            cands = [dkeys[i] for i in picked]
            labels = [int(ret.doc_ids[i] in rel) for i in picked]
            val.append({"q": qk, "docs": cands, "labels": labels, "n_rel": len(rel)})
            continue
        bm_neg = [i for i in bm[n][:20] if ret.doc_ids[i] not in rel]
        de_neg = [i for i in dense[n][:20] if ret.doc_ids[i] not in rel]
        for d in sorted(rel):
            if f"p:{ret.name}:{d}" not in store.index:
                continue
            negs: list[int] = []
            for pool, take in ((bm_neg, 4), (de_neg, GROUP - 1)):
                for i in rng.sample(pool, len(pool)):
                    if len(negs) >= take or len(negs) >= GROUP - 1:
                        break
                    if dkeys[i] not in negs:
                        negs.append(dkeys[i])
            if len(negs) == GROUP - 1:
                train.append({"src": ret.name, "q": qk, "docs": [store.index[f"p:{ret.name}:{d}"]] + negs,
                              "labels": [1] + [0] * (GROUP - 1)})
    return train, val, stats


def _near_miss_variants(pairs: list[tuple[int, int]], store: TextStore, rng: random.Random,
                        limit: int) -> dict[tuple[int, int], list[int]]:
    """Near-miss variants (:func:`funnelrank.train.near_misses.make_near_misses`) of the positives of up
    to `limit` (query, positive) text pairs, added to `store` so that they are encoded with the rest."""
    from funnelrank.train.near_misses import make_near_misses
    from funnelrank.train.wordnet import load_wordnet

    wn = load_wordnet()
    out: dict[tuple[int, int], list[int]] = {}
    for q, p in rng.sample(pairs, len(pairs)):
        if len(out) >= limit:
            break
        variants = make_near_misses(store.texts[q], store.texts[p], wn, rng)
        if variants:
            out[(q, p)] = [store.add(f"p:nearmiss:{v}", v) for v in variants]
    return out


def _near_miss_groups(train: list[dict], variants: dict[tuple[int, int], list[int]]) -> list[dict]:
    """A "nearmiss" group per training group whose positive has variants: the query, the positive, its
    variants, then the group's mined negatives. No distillation for them (``"kd": False``): the
    bi-encoder teacher cannot tell a near-miss from the answer."""
    out = []
    for g in train:
        v = variants.get((g["q"], g["docs"][0]))
        if v:
            docs = [g["docs"][0], *v, *[d for d in g["docs"][1:] if d not in v]][:GROUP]
            out.append({"src": "nearmiss", "q": g["q"], "docs": docs, "labels": [1] + [0] * (GROUP - 1),
                        "kd": False, "from": g["src"]})
    return out


def prepare(data: Path, work: Path, n_squad: int = 2000, n_squad_val: int = 300, max_q: int = 32,
            max_p: int = 128, n_separate: int = 4, seed: int = 0, msmarco: bool = True,
            near_misses: int = 1500) -> None:
    """Build the cache and the groups under `work` (see module doc). `msmarco` adds msmarco-dev-sample's
    train split (and its validation split to validation); `near_misses` caps the near-miss groups."""
    rng = random.Random(seed)
    sets = [load_scifact(data), load_squad(data, n_squad, n_squad_val, seed)]
    if msmarco:
        sets.append(load_msmarco(data))
    wq_train, wq_dev = load_wikiqa(data, "train"), load_wikiqa(data, "dev")
    store = TextStore()
    for ret in sets:
        for q in ret.train_qids + ret.val_qids:
            store.add(f"q:{ret.name}:{q}", ret.queries[q])
        for d, t in zip(ret.doc_ids, ret.doc_texts):
            store.add(f"p:{ret.name}:{d}", t)
    wiki_pool: list[str] = []
    for split, groups in (("train", wq_train), ("dev", wq_dev)):
        for q, sents, labels in groups:
            if not any(labels):
                continue
            store.add(f"q:wikiqa:{q}", q)
            for s in sents:
                store.add(f"p:wikiqa:{s}", s)
                wiki_pool.append(s)
    pairs = [(store.index[f"q:{ret.name}:{q}"], store.index[f"p:{ret.name}:{d}"]) for ret in sets
             for q in ret.train_qids for d, g in ret.qrels[q].items() if g > 0 and f"p:{ret.name}:{d}" in store.index]
    pairs += [(store.index[f"q:wikiqa:{q}"], store.index[f"p:wikiqa:{s}"]) for q, sents, labels in wq_train
              for s, lab in zip(sents, labels) if lab == 1]
    variants = _near_miss_variants(pairs, store, rng, near_misses) if near_misses > 0 else {}
    model = SegmentCrossEncoder.from_base(n_separate=n_separate)
    cache = build_cache(model, store.keys, store.texts, work / "cache", max_q=max_q, max_p=max_p)
    train: list[dict[str, Any]] = []
    val: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for ret in sets:
        ret_groups, v, counts = _retrieval_groups(ret, store, cache.emb, rng,
                                                  val_depth=30 if ret.name == "scifact" else 20)
        train += ret_groups
        val[ret.name] = v
        stats[ret.name] = {"train_groups": len(ret_groups), "val_queries": len(v), **counts}
    wq = []
    for q, sents, labels in wq_train:
        if not any(labels):
            continue
        negs = [s for s, lab in zip(sents, labels) if lab == 0]
        for s, lab in zip(sents, labels):
            if lab != 1:
                continue
            pick = rng.sample(negs, min(len(negs), GROUP - 1))
            while len(pick) < GROUP - 1:  # short candidate lists are topped up with random wikiqa sentences
                r = rng.choice(wiki_pool)
                if r not in pick and r != s and r not in sents:
                    pick.append(r)
            wq.append({"src": "wikiqa", "q": store.index[f"q:wikiqa:{q}"],
                       "docs": [store.index[f"p:wikiqa:{x}"] for x in [s] + pick], "labels": [1] + [0] * (GROUP - 1)})
    train += wq
    nm = _near_miss_groups(train, variants)
    train += nm
    stats["nearmiss"] = {"train_groups": len(nm), "variants": sum(len(v) for v in variants.values())}
    val["wikiqa"] = [{"q": store.index[f"q:wikiqa:{q}"], "docs": [store.index[f"p:wikiqa:{s}"] for s in sents],
                      "labels": labels, "n_rel": sum(labels)} for q, sents, labels in wq_dev if any(labels)]
    stats["wikiqa"] = {"train_groups": len(wq), "val_queries": len(val["wikiqa"])}
    for g in train:
        g["teacher"] = [float(cache.emb[g["q"]] @ cache.emb[d]) for d in g["docs"]]
    (work / "train_groups.json").write_text(json.dumps(train))
    (work / "val.json").write_text(json.dumps(val))
    (work / "prepare_stats.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps(stats, indent=1))
