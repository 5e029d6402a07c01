"""The quality guard for faster stage-2 variants: measure each against the original on validation data and
keep only those that lose nothing measurable.

The rule, fixed before measuring: a variant is *kept* when the 95% paired-bootstrap interval of its nDCG@10
difference from the original (``variant - fp32``, over the validation queries) lies inside
``[-GUARD_MARGIN, +GUARD_MARGIN]`` (0.01). A variant whose interval reaches past the margin is dropped even
when its mean difference is small: the data cannot vouch for it.

Variants (:data:`VARIANTS`; each is a set of ``CrossEncoder.from_pretrained`` options):

* ``fp32``: the model as it is (the reference);
* ``int8``: dynamic int8 quantization (:func:`funnelrank.rerank.variants.int8_variant`);
* ``states``: reused passage states, exact (segment cross-encoders only, :mod:`funnelrank.rerank.split`);
* ``states-prefix``: reused passage states where truncated passages reuse their precomputed longest form;
* ``cascade-FIRST[-MAX_LENGTH]@KEEP`` (any number of them, e.g. ``cascade-int8-128@30``): the first-pass
  variant FIRST (one of the above, at MAX_LENGTH tokens when given) scores every candidate and fp32 rescores
  the first pass's top KEEP (:mod:`funnelrank.rerank.cascade`); its time per query is both passes. Its row
  also reports ``fp32_top10_recall``: the share of fp32's top 10 that the first pass kept for rescoring.

For the ``states`` variants (and cascades with a states first pass) every candidate passage's states are
precomputed first (what an index would do); that time is reported as ``index_s``, apart from the per-query
rerank time.

    >>> report = guard(model_dir, load_beir(data, "validation"), candidates=20)   # doctest: +SKIP
    >>> {v["variant"]: v["kept"] for v in report["variants"]}                     # doctest: +SKIP
    {'fp32': True, 'int8': False, 'states': True, 'states-prefix': True}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.candidates import Candidate
from funnelrank.eval.beir import BeirDataset
from funnelrank.eval.metrics import ndcg_at_k
from funnelrank.eval.significance import compare_per_query
from funnelrank.rerank.cascade import CascadeScorer, CascadeSpec, is_cascade_name
from funnelrank.rerank.policy import DEFAULT_DEPTH, RankPolicy
from funnelrank.rerank.scorer import Scorer
from funnelrank.rerank.variants import LOAD_VARIANTS

__all__ = ["GUARD_MARGIN", "VARIANTS", "candidate_lists", "check_variants", "guard", "kendall_tau",
           "variant_options"]

ALL_KEPT = RankPolicy(floor=None, top_k=None)
"""The guard's policy: every candidate, in the cross-encoder's order (what nDCG@10 is taken over)."""

GUARD_MARGIN = 0.01
"""A kept variant's 95% interval of the nDCG@10 difference lies within +-GUARD_MARGIN."""

VARIANTS: dict[str, dict[str, Any]] = dict(LOAD_VARIANTS)
"""Variant name -> the ``CrossEncoder.from_pretrained`` options that load it (the guard's default set;
cascades, ``cascade-...``, are named on demand)."""


def check_variants(variants: Sequence[str]) -> None:
    """ValueError naming every entry of `variants` that is neither in :data:`VARIANTS` nor a valid cascade."""
    bad = []
    for v in variants:
        if is_cascade_name(v):
            try:
                CascadeSpec.parse(v)
            except ValueError as exc:
                bad.append(f"{v} ({exc})")
        elif v not in VARIANTS:
            bad.append(v)
    if bad:
        raise ValueError(f"unknown variants {bad}; choose from {list(VARIANTS)} or cascade-FIRST[-MAX_LENGTH]@KEEP "
                         "(e.g. cascade-int8-128@30)")


def variant_options(name: str) -> dict[str, Any]:
    """What loads variant `name`: its ``from_pretrained`` options, or for a cascade
    ``{"cascade": "int8-128@30"}`` (``Reranker(cascade=...)``).

        >>> variant_options("int8"), variant_options("cascade-int8-128@30")
        ({'precision': 'int8'}, {'cascade': 'int8-128@30'})
    """
    check_variants([name])
    if is_cascade_name(name):
        return {"cascade": CascadeSpec.parse(name).name}
    return dict(VARIANTS[name])


def candidate_lists(ds: BeirDataset, candidates: int) -> dict[str, list[str]]:
    """Each judged query's stage-1 candidates: the dataset's BM25 run when it has one, else the project's BM25
    over the corpus (:class:`funnelrank.retrieve.retrievers.BM25Retriever`), cut to `candidates`."""
    if ds.run is not None:
        return {q: [d for d, _ in ds.run.get(q, [])[:candidates] if d in ds.corpus] for q in ds.queries}
    from funnelrank.retrieve.retrievers import BM25Retriever
    from funnelrank.store.collection import Collection

    collection = Collection(dense=False)
    collection.add(ds.doc_ids(), ds.doc_texts())
    retriever = BM25Retriever(collection)
    got = retriever.retrieve_batch([ds.queries[q].text for q in ds.queries], candidates)
    return {q: [c.id for c in r.candidates] for q, r in zip(ds.queries, got)}


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b between two score vectors (1.0 = same order; 1.0 for fewer than two items)."""
    if len(a) < 2:
        return 1.0
    from scipy.stats import kendalltau

    value = kendalltau(a, b).statistic
    return 1.0 if np.isnan(value) else float(value)


def guard(
    model: str | Path,
    ds: BeirDataset,
    *,
    variants: Sequence[str] = tuple(VARIANTS),
    candidates: int = DEFAULT_DEPTH,
    max_length: int | None = None,
    threads: int = 2,
    margin: float = GUARD_MARGIN,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure `variants` of the cross-encoder `model` against its fp32 original on `ds` (a validation split):
    nDCG@10 of the reranked candidates per query, the paired comparison with fp32, agreement with fp32's scores
    (largest |logit difference|, mean per-query Kendall tau), per-query rerank milliseconds, and ``kept`` by
    the rule in the module doc. Variants a model cannot take (``states`` for a model whose layers all read the
    pair jointly) are reported with ``"skipped"`` and the reason. Returns a JSON-ready report."""
    from funnelrank.rerank import CrossEncoder

    check_variants(variants)
    order = ["fp32", *dict.fromkeys(v for v in variants if v != "fp32")]
    lists = candidate_lists(ds, candidates)
    qids = [q for q in ds.queries if lists.get(q)]
    if not qids:
        raise ValueError(f"{ds.name}/{ds.split}: no judged query has candidates")
    texts = {d: ds.corpus[d].full_text for q in qids for d in lists[q]}
    rows: list[dict[str, Any]] = []
    logits_of: dict[str, list[np.ndarray]] = {}
    ndcg_of: dict[str, dict[str, float]] = {}
    say = progress or (lambda _m: None)
    exact: Any = None  # the fp32 model, kept for the cascades' second pass
    for name in order:
        spec = CascadeSpec.parse(name) if is_cascade_name(name) else None
        try:
            if spec is None:
                ce = CrossEncoder.from_pretrained(model, max_length=max_length, intra_op_threads=threads,
                                                  **VARIANTS[name])
            else:
                ce = CrossEncoder.from_pretrained(
                    model, max_length=spec.first_max_length or max_length, intra_op_threads=threads,
                    **spec.first_pass_options())
        except ValueError as exc:
            rows.append({"variant": name, "skipped": str(exc), "kept": False})
            say(f"{name}: skipped ({exc})")
            continue
        if name == "fp32":
            exact = ce
        index_s = 0.0
        if ce.state_store is not None:
            t = time.perf_counter()
            ce.precompute_passages(list(texts.values()))
            index_s = time.perf_counter() - t
        # the served path: a Scorer (the variant, or the cascade of it and fp32), then the policy's order
        scorer: Scorer = ce if spec is None else CascadeScorer(ce, exact, spec.keep)
        per_query_ms, logits, ndcg, rescored = [], [], {}, []
        for i, q in enumerate(qids):
            ids = lists[q]
            t = time.perf_counter()
            scores = scorer.score(ds.queries[q].text, [texts[d] for d in ids])
            per_query_ms.append((time.perf_counter() - t) * 1000.0)
            logits.append(scores.logits)
            # a cascade's rescored candidates are its top `keep` (every pruned one ranks below them)
            keep = len(ids) if spec is None else min(spec.keep, len(ids))
            rescored.append(np.argsort(-scores.logits, kind="stable")[:keep])
            result = ALL_KEPT.apply([Candidate(d, "", r + 1) for r, d in enumerate(ids)], scores)
            ndcg[q] = ndcg_at_k([item.id for item in result], ds.qrels.get(q, {}), 10)
            if (i + 1) % 25 == 0:
                say(f"{name}: {i + 1}/{len(qids)} queries")
        logits_of[name], ndcg_of[name] = logits, ndcg
        row: dict[str, Any] = {
            "variant": name, "options": variant_options(name), "queries": len(qids),
            "ndcg@10": float(np.mean(list(ndcg.values()))),
            "p50_ms": float(np.percentile(per_query_ms, 50)), "p99_ms": float(np.percentile(per_query_ms, 99)),
            "pairs_per_s": sum(len(lists[q]) for q in qids) / (sum(per_query_ms) / 1000.0),
            "index_s": round(index_s, 3),
        }
        if name == "fp32":
            row["kept"] = True
        else:
            c = compare_per_query(name, ndcg, "fp32", ndcg_of["fp32"], "ndcg@10").as_dict()
            row["vs_fp32"] = c
            # over the candidates the variant scored itself (a cascade's pruned ones have no score of their own)
            row["max_abs_logit_diff"] = float(max(np.abs(a[i] - b[i]).max() for a, b, i in
                                                  zip(logits, logits_of["fp32"], rescored)))
            row["kendall_tau"] = float(np.mean([kendall_tau(a, b) for a, b in zip(logits, logits_of["fp32"])]))
            if spec is not None:
                row["fp32_top10_recall"] = _top_recall(logits, logits_of["fp32"], 10)
            row["kept"] = bool(-margin <= c["ci_low"] and c["ci_high"] <= margin)
        if ce.state_store is not None:
            row["state_store"] = ce.state_store.stats()
        rows.append(row)
        say(f"{name}: nDCG@10 {row['ndcg@10']:.4f}, p50 {row['p50_ms']:.0f} ms/query, kept {row['kept']}")
        if ce is not exact:
            del ce
    del exact
    fp32 = next(r for r in rows if r["variant"] == "fp32")
    for r in rows:
        if "p50_ms" in r:
            r["speedup_vs_fp32"] = fp32["p50_ms"] / r["p50_ms"]
    kept = [r for r in rows if r.get("kept") and "p50_ms" in r]
    fastest = min(kept, key=lambda r: r["p50_ms"])
    return {
        "model": str(model), "dataset": f"{ds.name}/{ds.split}", "candidates": candidates, "max_length": max_length,
        "threads": threads, "rule": f"kept when the 95% interval of nDCG@10(variant) - nDCG@10(fp32) lies within "
                                   f"+-{margin}", "variants": rows,
        "fastest_kept": fastest["variant"], "speedup_of_fastest_kept": fastest["speedup_vs_fp32"],
    }


def _top_recall(logits: Sequence[np.ndarray], reference: Sequence[np.ndarray], k: int) -> float:
    """Mean over queries of the share of `reference`'s top `k` that are also in `logits`' top `k`
    (for a cascade: fp32's top 10 that the first pass let through, as pruned ones rank below them)."""
    shares = []
    for a, b in zip(logits, reference):
        top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
        top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
        shares.append(len(top_a & top_b) / len(top_b) if top_b else 1.0)
    return float(np.mean(shares)) if shares else 1.0


def describe(report: Mapping[str, Any]) -> str:
    """The report as a table, one line per variant."""
    lines = [f"{report['dataset']}: {report['variants'][0].get('queries', 0)} queries x {report['candidates']} "
             f"candidates; {report['rule']}"]
    for r in report["variants"]:
        if "skipped" in r:
            lines.append(f"  {r['variant']:22s} skipped: {r['skipped']}")
            continue
        vs = r.get("vs_fp32")
        diff = (f"{vs['difference']:+.4f} [{vs['ci_low']:+.4f}, {vs['ci_high']:+.4f}] p={vs['p_value']:.3f}  "
                f"tau {r['kendall_tau']:.3f}" if vs else "reference")
        if "fp32_top10_recall" in r:
            diff += f"  top10 {r['fp32_top10_recall']:.3f}"
        lines.append(f"  {r['variant']:22s} nDCG@10 {r['ndcg@10']:.4f}  {diff:64s} p50 {r['p50_ms']:7.0f} ms  "
                     f"x{r['speedup_vs_fp32']:.2f}  {'KEPT' if r['kept'] else 'dropped'}")
    lines.append(f"fastest kept: {report['fastest_kept']} (x{report['speedup_of_fastest_kept']:.2f} at p50)")
    return "\n".join(lines)
