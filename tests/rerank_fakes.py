"""Fake pair models for the rerank tests (no ONNX, deterministic scores)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from funnelrank.rerank.cross_encoder import EncodedPairs


class ScoreInTextModel:
    """A passage "... [s=0.83] ..." scores 0.83 (logit = log(s / (1 - s))); passages without a tag score 0.01."""

    def encode(self, query: str, passages: Sequence[str]) -> EncodedPairs:
        if not query.strip():
            raise ValueError("query is empty")
        ids = []
        for p in passages:
            s = 0.01
            if "[s=" in p:
                s = float(p.split("[s=", 1)[1].split("]", 1)[0])
            a = np.zeros(max(3, len(p.split()) + 2), dtype=np.int64)
            a[0] = round(math.log(s / (1 - s)) * 1e6)
            ids.append(a)
        return EncodedPairs(ids, None, len(passages))

    def infer(self, input_ids: Sequence[np.ndarray], type_ids: Sequence[np.ndarray] | None) -> np.ndarray:
        return np.array([a[0] / 1e6 for a in input_ids], dtype=np.float64)
