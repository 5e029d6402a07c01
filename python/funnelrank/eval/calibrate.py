"""Recommend a relevance floor from persisted score traces (behind `funnelrank calibrate-floor`).

With relevance judgments (qrels), every traced (query, candidate) is labelled relevant (grade > 0) or not
(graded 0, or unjudged for a judged query: the usual IR convention), and the floor is chosen on those labels:

* ``objective="f1"`` (default): the floor maximising the F1 of "kept" (score >= floor) against "relevant";
* ``objective="youden"``: the floor maximising Youden's J = true-positive rate - false-positive rate;
* ``target_precision=p``: the lowest floor whose kept pairs are at least ``p`` relevant (most recall at that
  precision);
* :func:`promise_floor` (``--min-kept p``): the floor's promise (`funnelrank.eval.floor_promise`) as the
  objective: the highest floor at which at least ``p`` of the answerable queries still keep an answer among
  their top-k results, which refuses the most of the same queries made unanswerable.

Without judgments there is nothing to check a floor against, so the choice is Otsu's threshold: the cut of the
score distribution that maximises the between-class variance (the "valley" of a two-humped histogram,
one hump of junk, one of hits). It is a starting point to check by eye on the PNG, not a guarantee.

Candidate floors are midpoints between consecutive distinct traced scores, so a floor never sits exactly on
a traced score. Precision and recall are over the traced candidates only (recall is relative to what stage 1
retrieved). Calibration ignores the top-k cut: it asks only which scores clear the floor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.rerank.policy import RankPolicy, clears_floor
from funnelrank.rerank.traces import group_traces

GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class FloorPoint:
    """What a given floor does to the traced candidates."""

    floor: float
    kept: int
    kept_fraction: float
    no_evidence_queries: float
    """Fraction of queries where nothing clears the floor."""
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    youden_j: float | None = None


@dataclass
class FloorRecommendation:
    """The recommended floor, how it was chosen, and the same figures at other floors."""

    floor: float
    method: str
    at_floor: FloorPoint
    alternatives: list[FloorPoint] = field(default_factory=list)
    n_pairs: int = 0
    n_queries: int = 0
    n_relevant: int | None = None
    notes: list[str] = field(default_factory=list)
    promise: dict[str, Any] | None = None
    """With :func:`promise_floor`: the floor's promise at the recommended floor (`floor_promise`'s dict)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        from dataclasses import asdict

        return asdict(self)


# ---------------------------------------------------------------------- qrels
def load_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """Read judgments: BEIR TSV (``query-id corpus-id score``, see `funnelrank.eval.beir.load_qrels`)
    or TREC qrels (``qid 0 docid grade``, whitespace-separated)."""
    from funnelrank.eval.beir import load_qrels as load_beir_qrels

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no qrels file at {p}")
    with open(p, encoding="utf-8") as fh:
        first = next((line for line in fh if line.strip()), "")
    if len(first.split()) != 4:
        qrels = load_beir_qrels(p)
    else:
        qrels = {}
        with open(p, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 4:
                    raise ValueError(f"{p}:{n}: expected 4 columns (TREC qrels: qid iter docid grade)")
                try:
                    qrels.setdefault(parts[0], {})[parts[2]] = int(float(parts[3]))
                except ValueError:
                    raise ValueError(f"{p}:{n}: grade {parts[3]!r} is not a number") from None
    if not qrels:
        raise ValueError(f"{p}: no judgments found")
    return qrels


def label_traces(
    records: Sequence[dict[str, Any]], qrels: dict[str, dict[str, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Scores, relevance labels and query ids of the records whose query is judged.

    Returns ``(scores, labels, query_ids, skipped)``; `skipped` counts records of unjudged queries (or with
    no query_id), which are left out.
    """
    scores, labels, qids = [], [], []
    skipped = 0
    for rec in records:
        qid = rec.get("query_id")
        judged = qrels.get(str(qid)) if qid is not None else None
        if judged is None:
            skipped += 1
            continue
        scores.append(float(rec["score"]))
        labels.append(judged.get(str(rec["id"]), 0) > 0)
        qids.append(str(qid))
    return np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool), np.asarray(qids, dtype=object), skipped


# ---------------------------------------------------------------------- floors
def _cut_points(sorted_desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct-score boundary: how many are kept (k) and the floor between kept and dropped."""
    n = sorted_desc.shape[0]
    k = np.nonzero(np.diff(sorted_desc) < 0)[0] + 1  # keep top-k, boundary between distinct scores
    floors = (sorted_desc[k - 1] + sorted_desc[k]) / 2.0
    k = np.append(k, n)
    floors = np.append(floors, sorted_desc[-1])  # keep everything
    return k, floors


def floor_point(scores: np.ndarray, floor: float, query_ids: np.ndarray, labels: np.ndarray | None = None) -> FloorPoint:
    """The figures of one floor over the traced scores (and labels when given)."""
    keep = clears_floor(scores, floor)
    n = scores.shape[0]
    best: dict[Any, float] = {}
    for q, s in zip(query_ids, scores):
        if s > best.get(q, -1.0):
            best[q] = s
    no_ev = sum(1 for s in best.values() if not clears_floor(s, floor)) / len(best) if best else 0.0
    kept = int(keep.sum())
    if labels is None:
        return FloorPoint(float(floor), kept, kept / n if n else 0.0, no_ev)
    tp = int(np.sum(keep & labels))
    pos = int(labels.sum())
    neg = n - pos
    precision = tp / kept if kept else 1.0
    recall = tp / pos if pos else 0.0
    f1 = 2 * tp / (kept + pos) if kept + pos else 0.0
    fpr = (kept - tp) / neg if neg else 0.0
    return FloorPoint(float(floor), kept, kept / n if n else 0.0, no_ev, precision, recall, f1, recall - fpr)


def otsu_threshold(scores: np.ndarray) -> float:
    """Otsu's threshold over the exact scores: the cut maximising between-class variance."""
    x = np.sort(np.asarray(scores, dtype=np.float64))
    n = x.shape[0]
    if n < 2 or x[0] == x[-1]:
        raise ValueError("need at least two distinct scores to find a threshold")
    k, floors = _cut_points(x[::-1])  # k = size of the upper class
    k, floors = k[:-1], floors[:-1]
    csum = np.cumsum(x[::-1])
    total = csum[-1]
    w1 = k / n
    mu1 = csum[k - 1] / k
    mu0 = (total - csum[k - 1]) / (n - k)
    between = w1 * (1 - w1) * (mu1 - mu0) ** 2
    return float(floors[int(np.argmax(between))])


def recommend_floor(
    scores: np.ndarray,
    query_ids: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    objective: str = "f1",
    target_precision: float | None = None,
) -> FloorRecommendation:
    """Recommend a floor (see the module doc for the methods). `labels` None means unsupervised (Otsu)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] == 0:
        raise ValueError("no traced scores to calibrate on")
    if not np.all(np.isfinite(scores)):
        raise ValueError("traced scores contain NaN or infinity")
    if objective not in ("f1", "youden"):
        raise ValueError(f"objective must be 'f1' or 'youden', got {objective!r}")
    notes: list[str] = []
    n_rel: int | None = None
    if labels is None:
        if target_precision is not None:
            raise ValueError("--target-precision needs relevance judgments (--qrels)")
        floor = otsu_threshold(scores)
        method = "otsu"
        notes.append("no judgments: Otsu's threshold of the score distribution; check the histogram")
    else:
        labels = np.asarray(labels, dtype=bool)
        n_rel = int(labels.sum())
        if n_rel == 0:
            raise ValueError("no traced candidate is judged relevant; cannot calibrate against qrels")
        order = np.argsort(-scores, kind="stable")
        desc = scores[order]
        k, floors = _cut_points(desc)
        tp = np.cumsum(labels[order])[k - 1]
        n, neg = scores.shape[0], scores.shape[0] - n_rel
        if target_precision is not None:
            if not 0.0 < target_precision <= 1.0:
                raise ValueError("target precision must be in (0, 1]")
            ok = np.nonzero(tp / k >= target_precision)[0]
            if ok.size == 0:
                raise ValueError(f"no floor reaches precision {target_precision:.3f} on these traces")
            i = int(ok[-1])
            method = f"target-precision {target_precision:g}"
        elif objective == "f1":
            i = int(np.argmax(2 * tp / (k + n_rel)))
            method = "max F1"
        else:
            i = int(np.argmax(tp / n_rel - (k - tp) / neg if neg else tp / n_rel))
            method = "max Youden J"
        floor = float(floors[i])
        if k[i] == n:
            notes.append("the best floor keeps every traced candidate: the traces do not separate relevance")
    floor = float(min(1.0, max(0.0, floor)))
    at = floor_point(scores, floor, query_ids, labels)
    alternatives = [floor_point(scores, g, query_ids, labels) for g in GRID]
    return FloorRecommendation(
        floor=floor,
        method=method,
        at_floor=at,
        alternatives=alternatives,
        n_pairs=int(scores.shape[0]),
        n_queries=len(set(query_ids.tolist())),
        n_relevant=n_rel,
        notes=notes,
    )


def promise_floor(
    records: Sequence[dict[str, Any]],
    qrels: dict[str, dict[str, int]],
    *,
    min_kept: float,
    top_k: int = 10,
) -> FloorRecommendation:
    """The highest floor at which at least `min_kept` of the traced answerable queries keep an answer among
    their `top_k` results; the floor's promise there (answerable kept, unanswerable refused, with intervals) is
    in ``.promise``. Raises ValueError when no floor reaches `min_kept` (not even keeping everything).

    >>> recs = [{"query_id": "q", "id": "d1", "score": 0.9, "rerank_rank": 1},
    ...         {"query_id": "q", "id": "d2", "score": 0.3, "rerank_rank": 2}]
    >>> rec = promise_floor(recs, {"q": {"d1": 1}}, min_kept=1.0)
    >>> round(rec.floor, 2), rec.promise["answerable_kept"], rec.promise["unanswerable_refused"]
    (0.6, 1.0, 1.0)
    """
    from funnelrank.eval.floor_promise import floor_promise

    if not 0.0 < min_kept <= 1.0:
        raise ValueError(f"min_kept must be in (0, 1], got {min_kept!r}")
    policy = RankPolicy(top_k=top_k)  # the cross-encoder's order, as the floor is served without fusion
    traced, _ = group_traces(records)
    ranked = {q: t for q, t in traced.items() if q in qrels}
    if not ranked:
        raise ValueError("no traced query id appears in the qrels (were traces written with query_id?)")
    scores = np.concatenate([t.scores for t in ranked.values()])
    if not np.all(np.isfinite(scores)):
        raise ValueError("traced scores contain NaN or infinity")

    def kept(floor: float) -> float:
        share = floor_promise(ranked, qrels, policy.replace(floor=floor))["answerable_kept"]
        if not isinstance(share, float):
            raise ValueError("no traced query has a judged-relevant candidate; nothing to keep")
        return share

    # the answerable share kept only falls as the floor rises, so bisect the distinct scores for the highest one
    # that still keeps enough; the floor is then the midpoint below it (every floor in between keeps the same)
    levels = np.unique(np.clip(scores, 0.0, 1.0))
    most = kept(float(levels[0]))
    if most < min_kept:
        raise ValueError(f"no floor keeps an answer for {min_kept:.3f} of the answerable queries: even keeping "
                         f"every candidate, only {most:.3f} have one in their top {top_k}")
    lo, hi = 0, len(levels) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if kept(float(levels[mid])) >= min_kept:
            lo = mid
        else:
            hi = mid - 1
    floor = float((levels[lo] + levels[lo - 1]) / 2.0) if lo > 0 else 0.0
    promise = floor_promise(ranked, qrels, policy.replace(floor=floor))
    flat_ids = np.asarray([q for q, t in ranked.items() for _ in t.ids], dtype=object)
    labels = np.asarray([qrels[q].get(d, 0) > 0 for q, t in ranked.items() for d in t.ids], dtype=bool)
    return FloorRecommendation(
        floor=floor,
        method=f"promise: the highest floor keeping an answer for >= {min_kept:g} of answerable queries (top {top_k})",
        at_floor=floor_point(scores, floor, flat_ids, labels),
        alternatives=[floor_point(scores, g, flat_ids, labels) for g in GRID],
        n_pairs=int(scores.shape[0]),
        n_queries=len(ranked),
        n_relevant=int(labels.sum()),
        notes=[f"at this floor {promise['unanswerable_refused']:.3f} of the queries made unanswerable (judged-relevant "
               f"candidates removed) are refused, 95% interval {promise['unanswerable_refused_ci']}"],
        promise=promise,
    )


# ---------------------------------------------------------------------- plot
def plot_histogram(
    path: str | os.PathLike[str],
    scores: np.ndarray,
    floor: float,
    labels: np.ndarray | None = None,
    *,
    title: str = "Reranker scores",
) -> Path:
    """Write a PNG histogram of the scores (relevant vs non-relevant when labelled) with the floor marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from funnelrank.files import atomic_writer

    out = Path(path)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"directory {out.parent} does not exist")
    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bins: Any = np.linspace(0.0, 1.0, 41)  # matplotlib's stubs ask for a Sequence; it takes arrays
    if labels is None:
        ax.hist(scores, bins=bins, color="tab:gray", alpha=0.8, label=f"all candidates ({scores.shape[0]})")
    else:
        ax.hist(scores[~labels], bins=bins, color="tab:red", alpha=0.55, label=f"non-relevant ({int((~labels).sum())})")
        ax.hist(scores[labels], bins=bins, color="tab:green", alpha=0.55, label=f"relevant ({int(labels.sum())})")
    ax.axvline(floor, color="black", linestyle="--", linewidth=1.5, label=f"floor {floor:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("cross-encoder score (sigmoid)")
    ax.set_ylabel("candidates (log scale)")
    ax.set_title(title)
    ax.legend(loc="upper center")
    fig.tight_layout()
    with atomic_writer(out) as fh:
        fig.savefig(fh, format="png")
    return out
