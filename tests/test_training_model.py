"""The segment cross-encoder used to train the default reranker: the exported full graph must equal the
cached training path, start as the bi-encoder, and ignore padding. Tiny random BERTs keep this fast."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from funnelrank.train.model import SegmentCrossEncoder  # noqa: E402


def _tiny(n_separate: int, seed: int = 0, interaction: bool = False) -> SegmentCrossEncoder:
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    model = SegmentCrossEncoder(transformers.BertModel(cfg, add_pooling_layer=False), n_separate=n_separate,
                                cross_bias_init=-1.0, scale_init=5.0, bias_init=0.5, cls_id=101,
                                interaction=interaction)
    return model.eval()


def _pair(q: list[int], p: list[int], pad: int = 0) -> tuple[torch.Tensor, ...]:
    ids = [101] + q + [102] + p + [102]
    tt = [0] * (len(q) + 2) + [1] * (len(p) + 1)
    am = [1] * len(ids) + [0] * pad
    return torch.tensor([ids + [0] * pad]), torch.tensor([am]), torch.tensor([tt + [0] * pad])


def _segment(model: SegmentCrossEncoder, toks: list[int], n_layers: int | None = None) -> torch.Tensor:
    ids = torch.tensor([[101] + toks + [102]])
    return model.encode_segment(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None], n_layers=n_layers)


@pytest.mark.parametrize("interaction", [False, True])
@pytest.mark.parametrize("n_separate", [0, 1, 2, 3])
def test_full_graph_equals_cached_training_path(n_separate: int, interaction: bool) -> None:
    model = _tiny(n_separate, interaction=interaction)
    if interaction:
        with torch.no_grad():  # a non-zero interaction term, so the check covers it
            model.interact.weight.normal_(0.0, 0.5)
    q, p = [5, 6, 7], [8, 9, 10, 11, 12]
    with torch.no_grad():
        full = model(*_pair(q, p))[0, 0]
        x = torch.cat([_segment(model, q), _segment(model, p)], dim=1)
        seg = torch.tensor([[0] * (len(q) + 2) + [1] * (len(p) + 2)])
        cached = model.joint(x, torch.ones_like(seg), seg)[0]
    assert float(abs(full - cached)) < 1e-4


def test_closed_cross_attention_is_the_bi_encoder() -> None:
    model = _tiny(1)
    with torch.no_grad():
        model.cross_bias.fill_(-1e4)
        q, p = [5, 6, 7], [30, 31, 32, 33]
        got = float(model(*_pair(q, p))[0, 0])
        eq, ep = _segment(model, q, n_layers=3).mean(1)[0], _segment(model, p, n_layers=3).mean(1)[0]
        cos = float(torch.nn.functional.cosine_similarity(eq, ep, dim=0))
    assert got == pytest.approx(5.0 * cos + 0.5, abs=1e-4)
    with torch.no_grad():
        model.cross_bias.fill_(2.0)
        opened = float(model(*_pair(q, p))[0, 0])
    assert abs(opened - got) > 1e-3  # the joint layer really attends across the pair


def test_padding_does_not_change_scores() -> None:
    model = _tiny(2)
    with torch.no_grad():
        a = model(*_pair([5, 6], [7, 8, 9]))[0, 0]
        b = model(*_pair([5, 6], [7, 8, 9], pad=6))[0, 0]
    assert np.isfinite(float(b)) and float(abs(a - b)) < 1e-4


def test_wise_ft_interpolation_ends_and_midpoint() -> None:
    from funnelrank.train.export import interpolate_params

    start = _tiny(2, seed=0)
    trained = {k: v.detach() + 1.0 for k, v in _tiny(2, seed=1).named_parameters() if k.startswith("layers.2.")}
    trained["scale"] = torch.tensor(9.0)
    base = dict(start.named_parameters())
    for alpha in (0.0, 0.5, 1.0):
        mixed = interpolate_params(trained, start, alpha)
        assert set(mixed) == set(trained)
        for k, v in mixed.items():
            torch.testing.assert_close(v, alpha * trained[k] + (1 - alpha) * base[k].detach())
    torch.testing.assert_close(interpolate_params(trained, start, 1.0)["scale"], torch.tensor(9.0))
    torch.testing.assert_close(interpolate_params(trained, start, 0.0)["scale"], base["scale"].detach())


def test_wise_ft_rejects_bad_alpha_and_foreign_parameters() -> None:
    from funnelrank.train.export import interpolate_params

    start = _tiny(2)
    with pytest.raises(ValueError, match="alpha"):
        interpolate_params({}, start, 1.5)
    with pytest.raises(ValueError, match="unknown parameters"):
        interpolate_params({"nope": torch.zeros(1)}, start, 0.5)
    with pytest.raises(ValueError, match="shape"):
        interpolate_params({"scale": torch.zeros(3)}, start, 0.5)


def test_interaction_head_starts_at_zero_and_learns() -> None:
    plain, with_head = _tiny(2, seed=3), _tiny(2, seed=3, interaction=True)
    q, p = [5, 6, 7], [8, 9, 10, 11]
    with torch.no_grad():
        assert float(with_head(*_pair(q, p))[0, 0]) == pytest.approx(float(plain(*_pair(q, p))[0, 0]), abs=1e-6)
    with_head.train()
    with_head(*_pair(q, p)).sum().backward()
    assert float(with_head.interact.weight.grad.abs().sum()) > 0.0  # the head gets a gradient from the start
