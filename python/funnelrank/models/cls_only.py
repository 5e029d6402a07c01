"""A cross-encoder whose last layer computes only the [CLS] row: the same logits, less graph.

A BERT-style sequence classifier reads one row of its last hidden state, the first ([CLS]) one: BERT through
its pooler, RoBERTa, XLM-R and ELECTRA through their classification heads. In the last layer the other rows'
queries, attention outputs and feed-forward blocks feed nothing, so :func:`cls_only_logits` rebuilds the model
as the first L-1 layers, then a last layer whose attention takes its query from the [CLS] row alone (keys and
values still from every row), its feed-forward on that one row, and the model's own head. For a 6-layer
MiniLM at 256 tokens that removes about 14% of the multiply-adds; the logits are the model's own (the exporter
checks them against the untouched PyTorch model).

Needs torch and transformers (the dev extra); used at export time only::

    from funnelrank.models.cls_only import cls_only_logits
    net = cls_only_logits(model)          # None when the model is not a supported layout
    net(input_ids, attention_mask, token_type_ids)   # -> tensor of shape (batch, num_labels)
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

__all__ = ["CLS_ONLY_MODEL_TYPES", "cls_only_logits"]

#: transformers model types whose layers and heads :func:`cls_only_logits` knows.
CLS_ONLY_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})

_LAYER_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                "attention.output.LayerNorm", "intermediate.dense", "intermediate.intermediate_act_fn",
                "output.dense", "output.LayerNorm")


def _has(module: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return False
    return True


def cls_only_logits(model: Any) -> Any | None:
    """A ``torch.nn.Module`` ``(input_ids, attention_mask, token_type_ids=None) -> logits`` computing what
    `model` (a transformers ``*ForSequenceClassification`` in eval mode) computes, with the last layer on the
    [CLS] row only; None when the model's type or layout is not one this knows (export it whole then).

    Example: for ``BertForSequenceClassification`` with 6 layers, the result runs layers 1-5 on every token,
    layer 6 on [CLS] (attending to every token), then the pooler and classifier; its logits equal the
    model's to float rounding (about 1e-6).
    """
    import torch

    config = model.config
    if str(getattr(config, "model_type", "")) not in CLS_ONLY_MODEL_TYPES:
        return None
    if str(getattr(config, "position_embedding_type", None) or "absolute") != "absolute":
        return None
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return None
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    head = getattr(model, "classifier", None)
    if base is None or layers is None or len(layers) < 2 or head is None:
        return None
    if not all(_has(layers[-1], part) for part in _LAYER_PARTS):
        return None
    pooler = getattr(base, "pooler", None) if config.model_type == "bert" else None
    if config.model_type == "bert" and pooler is None:
        return None

    lower_config = copy.deepcopy(config)
    lower_config.num_hidden_layers = len(layers) - 1
    init = inspect.signature(type(base).__init__).parameters
    lower = type(base)(lower_config, add_pooling_layer=False) if "add_pooling_layer" in init else type(base)(lower_config)
    missing, _ = lower.load_state_dict(base.state_dict(), strict=False)
    if missing:
        return None
    lower.eval()
    last = layers[-1]
    heads = int(config.num_attention_heads)
    head_dim = int(config.hidden_size) // heads
    with_types = int(getattr(config, "type_vocab_size", 0) or 0) > 0

    class _ClsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lower: Any = lower
            self.last: Any = last
            self.head: Any = head
            self.pooler: Any = pooler

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if with_types and token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            hidden = self.lower(**kwargs).last_hidden_state  # (batch, tokens, hidden)
            batch = hidden.shape[0]
            cls = hidden[:, :1]
            att = self.last.attention.self
            q = att.query(cls).view(batch, 1, heads, head_dim).transpose(1, 2)
            k = att.key(hidden).view(batch, -1, heads, head_dim).transpose(1, 2)
            v = att.value(hidden).view(batch, -1, heads, head_dim).transpose(1, 2)
            blocked = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
            probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim) + blocked, dim=-1)
            context = (probs @ v).transpose(1, 2).reshape(batch, 1, heads * head_dim)
            out = self.last.attention.output
            attended = out.LayerNorm(out.dense(context) + cls)
            inner = self.last.intermediate.intermediate_act_fn(self.last.intermediate.dense(attended))
            row = self.last.output.LayerNorm(self.last.output.dense(inner) + attended)  # (batch, 1, hidden)
            if self.pooler is not None:
                return self.head(self.pooler(row))
            return self.head(row)

    return _ClsOnly().eval()
