"""Near-miss evaluation: does the judge tell the answer from passages with the right tokens and the wrong
meaning (children vs adults, compress vs decompress), and does its floor keep one and drop the others?

A case is a query, the passage that answers it (``pos``) and near-misses (``neg``), one JSON object per line
of ``cases.jsonl`` (``../shared/data/nearmiss-dev``)::

    >>> cases = [NearMissCase("gzip: compress data", "gzip.compress(data)", ["gzip.decompress(data)"])]
    >>> report = score_cases(cases, [[0.9, 0.3]], floor=0.4)
    >>> report["answer_first"], report["gated_cleanly"]
    (1.0, 1.0)

Figures (the set's README suggests them): ``answer_first`` (pos ranked first), ``mrr`` (of pos),
``auc`` (pos scores against all near-miss scores, pooled; ties count half), and with a floor
``gated_cleanly`` (pos >= floor and every near-miss < floor) and the mean pos / near-miss scores. Shares
carry 95% bootstrap intervals over the cases.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnelrank.eval.significance import bootstrap_ci
from funnelrank.rerank.policy import clears_floor

__all__ = ["NearMissCase", "gates", "load_cases", "score_cases"]


@dataclass(frozen=True)
class NearMissCase:
    """One case: `query`, its answer `pos` and its near-misses `neg`."""

    query: str
    pos: str
    neg: list[str]


def load_cases(path: str | Path) -> list[NearMissCase]:
    """The cases of a ``cases.jsonl`` file (or of the directory holding one). ValueError naming the file and
    line for a malformed one; FileNotFoundError when there is no such file."""
    path = Path(path)
    if path.is_dir():
        path = path / "cases.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no near-miss cases at {path} (expected cases.jsonl, see ../shared/data/README.md)")
    cases: list[NearMissCase] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
        q, pos, neg = (obj.get(k) if isinstance(obj, dict) else None for k in ("q", "pos", "neg"))
        if not (isinstance(q, str) and q.strip() and isinstance(pos, str) and pos.strip() and isinstance(neg, list)
                and neg and all(isinstance(n, str) and n.strip() for n in neg)):
            raise ValueError(f'{path}:{lineno}: a case needs "q" and "pos" (non-empty strings) and "neg" (a '
                             "non-empty list of non-empty strings)")
        cases.append(NearMissCase(q, pos, list(neg)))
    if not cases:
        raise ValueError(f"{path}: no cases")
    return cases


def _share(values: Sequence[float]) -> tuple[float, list[float]]:
    low, high = bootstrap_ci(list(values))
    return round(float(np.mean(values)), 6), [round(low, 6), round(high, 6)]


def gates(scores: np.ndarray | Sequence[float], floor: float) -> bool:
    """Whether `floor` gates a case cleanly: ``scores[0]`` (the answer) clears it and no near-miss
    (``scores[1:]``) does (:func:`~funnelrank.rerank.policy.clears_floor`).

        >>> gates([0.9, 0.1, 0.3], 0.46), gates([0.9, 0.5], 0.46)
        (True, False)
    """
    clear = clears_floor(scores, floor)
    return bool(clear[0] and not clear[1:].any())


def score_cases(cases: Sequence[NearMissCase], scores: Sequence[Sequence[float]], *,
                floor: float | None = None) -> dict[str, object]:
    """The figures for `scores` (per case: the pos score, then one per near-miss, in `neg` order).

    ``answer_first`` needs pos strictly above every near-miss (a tie is not a win)."""
    if len(scores) != len(cases):
        raise ValueError(f"{len(cases)} cases but {len(scores)} score lists")
    first, rr, gated = [], [], []
    pos_all, neg_all = [], []
    for case, row in zip(cases, scores):
        s = np.asarray(row, dtype=np.float64)
        if s.shape != (1 + len(case.neg),):
            raise ValueError(f"case {case.query!r}: expected {1 + len(case.neg)} scores, got {s.shape[0]}")
        pos, neg = s[0], s[1:]
        first.append(1.0 if bool(np.all(pos > neg)) else 0.0)
        rr.append(1.0 / (1 + int(np.sum(neg >= pos))))
        pos_all.append(pos)
        neg_all.extend(neg.tolist())
        if floor is not None:
            gated.append(1.0 if gates(s, floor) else 0.0)
    p, n = np.asarray(pos_all), np.asarray(neg_all)
    auc = float(np.mean((p[:, None] > n[None, :]) + 0.5 * (p[:, None] == n[None, :])))
    answer_first, answer_first_ci = _share(first)
    report: dict[str, object] = {
        "cases": len(cases),
        "answer_first": answer_first,
        "answer_first_ci": answer_first_ci,
        "mrr": round(float(np.mean(rr)), 6),
        "auc": round(auc, 6),
        "mean_pos_score": round(float(p.mean()), 6),
        "mean_near_miss_score": round(float(n.mean()), 6),
    }
    if floor is not None:
        report["floor"] = floor
        report["gated_cleanly"], report["gated_cleanly_ci"] = _share(gated)
    return report
