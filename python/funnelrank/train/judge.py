"""The late-interaction judge: a frozen bi-encoder read token by token, and a small learned head.

Every layer of all-MiniLM-L6-v2 runs on the query and on the passage separately (block-diagonal attention,
as :class:`~funnelrank.train.model.SegmentCrossEncoder` with ``n_separate=6``), so the passage's token
states can be computed once at index time. On the final token states the head computes, per query word
piece (special tokens left out):

* ``maxsim``: its best cosine over the passage's word pieces (late interaction, as ColBERT);
* ``exact``: whether the same word piece occurs in the passage;
* a learned **importance** from the token's own state and its idf (which query words must be matched);
* a learned **match quality** from (maxsim, exact): how well the word is answered.

and per pair: the importance-weighted mean quality, a soft minimum of quality over the important words (one
unmatched "children" or "decompress" sinks the pair), the idf-weighted MaxSim, idf-weighted exact coverage
and the pooled cosine (the bi-encoder's own score). One linear layer maps these to the logit, and
``sigmoid(logit)`` is the score (its temperature and bias are fitted on validation data, so the same floor
means the same on every query).

The whole graph takes the usual cross-encoder inputs (input_ids, attention_mask, token_type_ids of
"[CLS] q [SEP] p [SEP]") and returns one logit per pair.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from funnelrank.train.model import NEG, SegmentCrossEncoder

SPECIAL_IDS = (0, 100, 101, 102, 103)  # [PAD] [UNK] [CLS] [SEP] [MASK] of the BERT uncased vocabulary

FEATURES = ("cos", "quality", "soft_min", "maxsim_idf", "exact_idf")
"""The pair-level channels the final linear layer reads, in order."""


class JudgeHead(nn.Module):
    """The learned part: token importance, match quality and the pair-level linear map (426 weights),
    and with ``rank`` > 0 a low-rank residual map of the token states before MaxSim (2 x 384 x rank weights,
    a learned late-interaction space that starts as the encoder's own).

    ``drop`` names channels of :data:`FEATURES` to zero (for the ablation table)."""

    def __init__(self, idf: torch.Tensor, hidden: int = 384, tau: float = 0.1,
                 drop: tuple[str, ...] = (), rank: int = 0) -> None:
        super().__init__()
        unknown = set(drop) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}; known: {FEATURES}")
        self.register_buffer("idf", idf.to(torch.float32))
        self.rank = int(rank)
        if self.rank:  # a low-rank residual on token states before MaxSim (zero at the start: plain MaxSim)
            self.down = nn.Linear(hidden, self.rank, bias=False)
            self.up = nn.Linear(self.rank, hidden, bias=False)
            nn.init.zeros_(self.up.weight)
        self.importance = nn.Linear(hidden, 1)
        nn.init.zeros_(self.importance.weight)
        nn.init.zeros_(self.importance.bias)
        self.idf_gain = nn.Parameter(torch.tensor(1.0))
        self.quality = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        self.log_tau = nn.Parameter(torch.tensor(float(tau)).log())
        self.out = nn.Linear(len(FEATURES), 1)
        keep = torch.tensor([0.0 if f in drop else 1.0 for f in FEATURES])
        self.register_buffer("keep", keep)
        with torch.no_grad():  # start as "cosine + MaxSim", the untrained sum that already ranks well
            self.out.weight.zero_()
            self.out.weight[0, FEATURES.index("cos")] = 10.0
            self.out.weight[0, FEATURES.index("maxsim_idf")] = 10.0
            self.out.bias.fill_(-12.0)

    def maxsim(self, q: torch.Tensor, p: torch.Tensor, p_mask: torch.Tensor) -> torch.Tensor:
        """(B, Lq): each query piece's best cosine over the passage's matching pieces, in the learned
        late-interaction space when ``rank`` > 0 (-1 when the passage has none)."""
        qt, pt = (q + self.up(self.down(q)), p + self.up(self.down(p))) if self.rank else (q, p)
        return token_maxsim(qt, pt, p_mask)

    def features(self, q: torch.Tensor, q_ids: torch.Tensor, q_mask: torch.Tensor, q_pool: torch.Tensor,
                 p: torch.Tensor, p_ids: torch.Tensor, p_mask: torch.Tensor, p_pool: torch.Tensor,
                 *, maxsim: torch.Tensor | None = None) -> torch.Tensor:
        """Pair channels (B, len(FEATURES)) from token states.

        q, p: (B, Lq, H), (B, Lp, H) final states; *_ids the word piece ids; *_mask 1.0 on the word pieces
        that take part in matching (special tokens and padding 0); *_pool the (B, H) mean-pooled embeddings;
        `maxsim`: :meth:`maxsim` of the same arguments when the caller already has it."""
        if maxsim is None:
            maxsim = self.maxsim(q, p, p_mask)
        exact = ((q_ids[:, :, None] == p_ids[:, None, :]).to(q.dtype) * p_mask[:, None, :]).amax(dim=-1)
        idf = self.idf[q_ids] * q_mask
        idf_sum = idf.sum(1).clamp(min=1e-6)
        maxsim_idf = (idf * maxsim).sum(1) / idf_sum
        exact_idf = (idf * exact).sum(1) / idf_sum
        imp = F.softplus(self.importance(q).squeeze(-1) + self.idf_gain * self.idf[q_ids]) * q_mask
        imp_sum = imp.sum(1).clamp(min=1e-6)
        qual = self.quality(torch.stack([maxsim, exact], dim=-1)).squeeze(-1)
        quality = (imp * qual).sum(1) / imp_sum
        tau = self.log_tau.exp()
        share = imp / imp_sum[:, None]
        soft_min = -tau * torch.log((share * torch.exp(-qual / tau)).sum(1).clamp(min=1e-30))
        cos = F.cosine_similarity(q_pool, p_pool, dim=-1, eps=1e-6)
        return torch.stack([cos, quality, soft_min, maxsim_idf, exact_idf], dim=-1) * self.keep

    def forward(self, *args: torch.Tensor, maxsim: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B,) from the same arguments as :meth:`features`."""
        return self.out(self.features(*args, maxsim=maxsim)).squeeze(-1)


def token_maxsim(q: torch.Tensor, p: torch.Tensor, p_mask: torch.Tensor) -> torch.Tensor:
    """(B, Lq): each query token's best cosine over the passage tokens under `p_mask`; -1 when none."""
    qn = F.normalize(q, dim=-1, eps=1e-6)
    pn = F.normalize(p, dim=-1, eps=1e-6)
    sim = torch.matmul(qn, pn.transpose(1, 2)) + (1.0 - p_mask)[:, None, :] * NEG
    return sim.max(dim=-1).values.clamp(min=-1.0)


def match_mask(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1.0 on word pieces that take part in matching: real tokens that are not special tokens."""
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in SPECIAL_IDS:
        special = special | (ids == s)
    return mask.to(torch.float32) * (~special).to(torch.float32)


def mean_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the states under mask (the bi-encoder's sentence embedding: special tokens included)."""
    m = mask.to(x.dtype)
    return (x * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)


class LateInteractionJudge(nn.Module):
    """Frozen encoder (each segment alone) + :class:`JudgeHead`; the exported graph (see module doc)."""

    def __init__(self, encoder: SegmentCrossEncoder, head: JudgeHead) -> None:
        super().__init__()
        if encoder.n_separate != len(encoder.layers):
            raise ValueError("the judge's encoder must run every layer per segment (n_separate = all layers)")
        self.encoder = encoder
        self.head = head

    @classmethod
    def from_base(cls, head: JudgeHead, **kw: Any) -> "LateInteractionJudge":
        """The judge over the pip-installed all-MiniLM-L6-v2 weights."""
        enc = SegmentCrossEncoder.from_base(n_separate=6, **kw)
        return cls(enc, head)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        """Score "[CLS] q [SEP] p [SEP]" pairs: logits of shape (B, 1)."""
        x, ids, am, seg = self.encoder.segment_states(input_ids, attention_mask, token_type_ids)
        qm = am * (1 - seg)
        pm = am * seg
        mm = match_mask(ids, am)
        args = (x, ids, mm * (1 - seg), mean_pool(x, qm), x, ids, mm * seg, mean_pool(x, pm))
        return self.head(*args)[:, None]
