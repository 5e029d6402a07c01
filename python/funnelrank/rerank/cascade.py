"""A two-pass cascade: a cheap first pass scores every candidate, the exact model rescores only its top ``keep``.

The first pass is one of the model's derived variants (:data:`FIRST_PASSES`: ``fp32``, ``int8``, ``states``,
``states-prefix``), optionally at a shorter pair budget (``max_length``). The exact model (the model as loaded,
fp32) then scores the ``keep`` candidates the first pass ranks highest. What the caller gets:

* the ``keep`` rescored candidates carry the exact model's logits and sigmoid scores, so a relevance floor and
  the order among them mean what they mean without the cascade;
* every pruned candidate gets :data:`PRUNED_LOGIT`-or-lower as its logit: ``min(PRUNED_LOGIT, lowest rescored
  logit - 1)``, the same for all of them, so it ranks below every rescored candidate, its score
  (sigmoid(-30) ~ 9.4e-14) clears no floor above 1e-13, and ties among the pruned keep their input (stage-1)
  order, as the depth advisor orders the candidates past its depth;
* with ``keep >= len(passages)`` the first pass is skipped and the result is the exact model's.

A cascade is written ``FIRST[-MAX_LENGTH]@KEEP`` (:meth:`CascadeSpec.parse`), e.g. ``int8-128@30``: int8 at
128 tokens scores all candidates, fp32 rescores the top 30. ``Reranker(cascade="int8-128@30")`` loads one;
``funnelrank optimize --variants cascade-int8-128@30`` measures it against fp32 before you use it.

    >>> spec = CascadeSpec.parse("int8-128@30")
    >>> spec
    CascadeSpec(first='int8', keep=30, first_max_length=128)
    >>> spec.name, spec.first_pass_options()
    ('int8-128@30', {'precision': 'int8'})
    >>> pick = rescore_indices(np.array([0.1, 2.0, -1.0, 1.5]), 2)
    >>> pick
    array([1, 3])
    >>> merge_logits(4, pick, np.array([3.0, -2.5]))
    array([-30. ,   3. , -30. ,  -2.5])
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from funnelrank.rerank.cross_encoder import sigmoid
from funnelrank.rerank.scorer import Scorer, Scores, chain
from funnelrank.rerank.variants import LOAD_VARIANTS

__all__ = [
    "CASCADE_PREFIX",
    "FIRST_PASSES",
    "PRUNED_LOGIT",
    "CascadeScorer",
    "CascadeSpec",
    "cascade_logits",
    "merge_logits",
    "rescore_indices",
]

FIRST_PASSES: tuple[str, ...] = tuple(LOAD_VARIANTS)
"""Variants a cascade's first pass can be (:data:`funnelrank.rerank.variants.LOAD_VARIANTS`)."""

PRUNED_LOGIT = -30.0
"""The logit a pruned candidate gets (lower still when a rescored logit is below it; see the module doc)."""

CASCADE_PREFIX = "cascade-"
"""How a cascade variant is named in ``funnelrank optimize`` and the bench: ``cascade-`` + the spec."""

_SPEC = re.compile(r"^(?P<first>[a-z0-9-]+?)(?:-(?P<length>\d+))?@(?P<keep>\d+)$")


@dataclass(frozen=True)
class CascadeSpec:
    """A cascade: the first-pass variant, how many candidates the exact model rescores, and the first pass's
    pair token budget (None: the exact model's).

        >>> CascadeSpec("states-prefix", 20, 128).name
        'states-prefix-128@20'
    """

    first: str = "int8"
    keep: int = 30
    first_max_length: int | None = None

    def __post_init__(self) -> None:
        if self.first not in FIRST_PASSES:
            raise ValueError(f"cascade first pass must be one of {list(FIRST_PASSES)}, got {self.first!r}")
        if isinstance(self.keep, bool) or not isinstance(self.keep, int) or self.keep < 1:
            raise ValueError(f"cascade keep must be an int >= 1 (candidates the exact model rescores), got {self.keep!r}")
        if self.first_max_length is not None and (
            isinstance(self.first_max_length, bool) or not isinstance(self.first_max_length, int)
            or self.first_max_length < 8
        ):
            raise ValueError(f"cascade first-pass max_length must be an int >= 8 or None, got {self.first_max_length!r}")

    @classmethod
    def parse(cls, text: str) -> CascadeSpec:
        """``FIRST[-MAX_LENGTH]@KEEP`` (a leading ``cascade-`` is allowed), e.g. ``int8-128@30``,
        ``states-prefix@20``, ``fp32-64@25``. ValueError for anything else."""
        if not isinstance(text, str):
            raise TypeError(f"cascade spec must be a str, got {type(text).__name__}")
        body = text.strip()
        if body.startswith(CASCADE_PREFIX):
            body = body[len(CASCADE_PREFIX):]
        m = _SPEC.match(body)
        if m is None:
            raise ValueError(f"cascade spec {text!r} is not FIRST[-MAX_LENGTH]@KEEP with FIRST one of "
                             f"{list(FIRST_PASSES)}, e.g. 'int8-128@30'")
        length = m.group("length")
        return cls(m.group("first"), int(m.group("keep")), None if length is None else int(length))

    @property
    def name(self) -> str:
        """The spec as :meth:`parse` reads it."""
        length = "" if self.first_max_length is None else f"-{self.first_max_length}"
        return f"{self.first}{length}@{self.keep}"

    def first_pass_options(self) -> dict[str, Any]:
        """The ``CrossEncoder.from_pretrained`` options of the first pass (without ``max_length``)."""
        return dict(LOAD_VARIANTS[self.first])


def is_cascade_name(name: str) -> bool:
    """Whether `name` names a cascade variant (``cascade-...``)."""
    return isinstance(name, str) and name.startswith(CASCADE_PREFIX)


def _check_keep(keep: int) -> int:
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
        raise ValueError(f"keep must be an int >= 1 (candidates the exact model rescores), got {keep!r}")
    return int(keep)


def rescore_indices(first_logits: np.ndarray, keep: int) -> np.ndarray:
    """Input positions of the `keep` candidates with the highest first-pass logits (ties: earlier input first;
    NaN counts as lowest), returned in input order; all positions when there are no more than `keep`."""
    keep = _check_keep(keep)
    x = np.asarray(first_logits, dtype=np.float64).reshape(-1)
    if len(x) <= keep:
        return np.arange(len(x))
    ranked = np.argsort(-np.nan_to_num(x, nan=-np.inf), kind="stable")
    return np.sort(ranked[:keep])


def merge_logits(n: int, rescored: np.ndarray, exact_logits: np.ndarray) -> np.ndarray:
    """Logits for all `n` candidates: the exact ones at `rescored`, and for every other position
    ``min(PRUNED_LOGIT, min(exact_logits) - 1)`` (see the module doc)."""
    idx = np.asarray(rescored, dtype=np.int64).reshape(-1)
    exact = np.asarray(exact_logits, dtype=np.float64).reshape(-1)
    if len(idx) != len(exact):
        raise ValueError(f"{len(idx)} rescored positions but {len(exact)} exact logits")
    if len(idx) and (idx.min() < 0 or idx.max() >= n or len(np.unique(idx)) != len(idx)):
        raise ValueError(f"rescored positions must be distinct and in [0, {n})")
    finite = exact[np.isfinite(exact)]
    pruned = min(PRUNED_LOGIT, float(finite.min()) - 1.0) if len(finite) else PRUNED_LOGIT
    out = np.full(n, pruned, dtype=np.float64)
    out[idx] = exact
    return out


def cascade_logits(
    query: str,
    passages: Sequence[str],
    first: Callable[[str, list[str]], np.ndarray],
    exact: Callable[[str, list[str]], np.ndarray],
    keep: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the cascade with two scoring functions (``(query, passages) -> logits``): `first` on every passage
    (skipped when there are no more than `keep`), `exact` on the `keep` it ranks highest. Returns
    ``(logits, rescored)``: the merged logits in passage order (:func:`merge_logits`) and the rescored
    positions.

        >>> first = lambda q, ps: np.array([len(p) for p in ps], dtype=float)   # a toy cheap pass
        >>> exact = lambda q, ps: np.array([10.0 if "gzip" in p else -5.0 for p in ps])
        >>> cascade_logits("compress", ["gzip it", "a", "json dumps"], first, exact, keep=2)
        (array([ 10., -30.,  -5.]), array([0, 2]))
    """
    keep = _check_keep(keep)
    texts = list(passages)
    if len(texts) <= keep:
        return np.asarray(exact(query, texts), dtype=np.float64).reshape(-1), np.arange(len(texts))
    first_logits = np.asarray(first(query, texts), dtype=np.float64).reshape(-1)
    if len(first_logits) != len(texts):
        raise ValueError(f"first pass returned {len(first_logits)} logits for {len(texts)} passages")
    idx = rescore_indices(first_logits, keep)
    exact_logits = exact(query, [texts[i] for i in idx])
    return merge_logits(len(texts), idx, exact_logits), idx


def _merged_scores(n: int, idx: np.ndarray, fresh: Scores) -> Scores:
    logits = merge_logits(n, idx, fresh.logits)
    return Scores(sigmoid(logits), logits, fresh.query_truncated)


class CascadeScorer(Scorer):
    """A :class:`~funnelrank.rerank.scorer.Scorer` that runs the cascade on two scorers: `first` on every
    passage (skipped when there are no more than `keep`), `exact` on the `keep` it ranks highest. Its
    `Scores` are in passage order, the exact model's for the rescored candidates, the pruned ones merged as
    :func:`merge_logits` says, ``query_truncated`` as the exact pass saw it. ``timeout`` covers both passes.
    `close()` closes both scorers.

        >>> path = default_reranker_path()
        >>> cascade = CascadeScorer(first=CrossEncoder.from_pretrained(path, precision="int8"),
        ...                         exact=CrossEncoder.from_pretrained(path), keep=2)
        >>> cascade.score("compress data with gzip", ["gzip.compress(data)", "json.dumps(obj)",
        ...                                           "zlib.compress(data)"]).logits.round(2)
        array([  2.42, -30.  ,   0.67])
    """

    def __init__(self, first: Scorer, exact: Scorer, keep: int) -> None:
        self.first = first
        self.exact = exact
        self.keep = _check_keep(keep)
        self.timeout = exact.timeout

    def submit(self, query: str, passages: Sequence[str]) -> concurrent.futures.Future[Scores]:
        """The cascade's future of `Scores` (see the class doc)."""
        texts = list(passages)
        if len(texts) <= self.keep:
            return self.exact.submit(query, texts)

        def rescore(first: Scores) -> concurrent.futures.Future[Scores]:
            idx = rescore_indices(first.logits, self.keep)
            fresh = self.exact.submit(query, [texts[i] for i in idx])
            return chain(fresh, lambda exact: _merged_scores(len(texts), idx, exact))

        return chain(self.first.submit(query, texts), rescore)

    def close(self) -> None:
        """Close both passes' scorers."""
        self.exact.close()
        self.first.close()
