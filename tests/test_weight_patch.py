"""Weight patches (funnelrank.models.weight_patch): a retrained model ships as its changed weights over the
committed ONNX file. Tiny ONNX graphs are built here; the packaged default reranker is checked at the end."""

from __future__ import annotations

from pathlib import Path

import funnelrank.models
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from funnelrank.files import file_sha256
from funnelrank.models import PACKAGED_RERANKER, PATCH_FILE, default_reranker_path
from funnelrank.models.weight_patch import apply_patch, make_patch
from onnx import TensorProto, helper, numpy_helper


def _model(path: Path, w: np.ndarray, b: np.ndarray, extra_node: bool = False) -> Path:
    """y = x @ float(w16) + b, with w stored as float16 followed by a Cast (like the shipped model)."""
    inits = [numpy_helper.from_array(w.astype(np.float16), "w__fp16"), numpy_helper.from_array(b, "b")]
    nodes = [helper.make_node("Cast", ["w__fp16"], ["w"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["y0" if extra_node else "y"])]
    if extra_node:
        nodes.append(helper.make_node("Relu", ["y0"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", w.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", w.shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["y"], {"x": x})[0]


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (64, 32)).astype(np.float32)
    b = rng.normal(0, 0.1, 32).astype(np.float32)
    base = _model(tmp_path / "base.onnx", w, b)
    trained = _model(tmp_path / "trained.onnx", w + rng.normal(0, 0.01, w.shape).astype(np.float32), b + 0.5)
    return base, trained, rng.normal(size=(5, 64)).astype(np.float32)


def test_quantized_patch_reproduces_the_trained_model(pair, tmp_path: Path) -> None:
    base, trained, x = pair
    stats = make_patch(base, trained, tmp_path / "p.npz")
    assert stats.tensors == 2 and stats.elements == 64 * 32 + 32
    assert 0 < stats.max_abs_error < 1e-3
    assert stats.size_bytes < 64 * 32 * 2  # smaller than the changed fp16 weights
    n = apply_patch(base, tmp_path / "p.npz", tmp_path / "patched.onnx")
    assert n == 2
    want, got, old = _run(trained, x), _run(tmp_path / "patched.onnx", x), _run(base, x)
    assert np.max(np.abs(got - want)) < 0.01 < np.max(np.abs(old - want))
    # the patched file keeps the base file's graph (same nodes, same initializer types)
    assert [n.op_type for n in onnx.load(str(tmp_path / "patched.onnx")).graph.node] == ["Cast", "MatMul", "Add"]


def test_exact_patch_is_bit_identical(pair, tmp_path: Path) -> None:
    base, trained, x = pair
    stats = make_patch(base, trained, tmp_path / "p.npz", quantize=False)
    assert stats.max_abs_error == 0.0
    apply_patch(base, tmp_path / "p.npz", tmp_path / "patched.onnx")
    assert np.array_equal(_run(tmp_path / "patched.onnx", x), _run(trained, x))


def test_unchanged_model_gives_an_empty_patch(pair, tmp_path: Path) -> None:
    base, _, x = pair
    assert make_patch(base, base, tmp_path / "p.npz").tensors == 0
    assert apply_patch(base, tmp_path / "p.npz", tmp_path / "same.onnx") == 0
    assert np.array_equal(_run(tmp_path / "same.onnx", x), _run(base, x))


def test_patch_refuses_a_different_graph(pair, tmp_path: Path) -> None:
    base, _, _ = pair
    other = _model(tmp_path / "other.onnx", np.zeros((64, 32), np.float32), np.zeros(32, np.float32), extra_node=True)
    with pytest.raises(ValueError, match="different graphs"):
        make_patch(base, other, tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()


def test_patch_refuses_another_base(pair, tmp_path: Path) -> None:
    base, trained, _ = pair
    make_patch(base, trained, tmp_path / "p.npz")
    with pytest.raises(ValueError, match="another base model"):
        apply_patch(trained, tmp_path / "p.npz", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_corrupt_or_missing_files_give_clear_errors(pair, tmp_path: Path) -> None:
    base, trained, _ = pair
    make_patch(base, trained, tmp_path / "p.npz")
    data = (tmp_path / "p.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable weight patch"):
        apply_patch(base, tmp_path / "cut.npz", tmp_path / "x.onnx")
    np.savez(tmp_path / "alien.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a funnelrank-weight-patch"):
        apply_patch(base, tmp_path / "alien.npz", tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError):
        apply_patch(base, tmp_path / "missing.npz", tmp_path / "x.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        make_patch(tmp_path / "junk.onnx", trained, tmp_path / "q.npz")
    assert not (tmp_path / "x.onnx").exists()


def test_packaged_patch_fits_the_packaged_model() -> None:
    """When the package carries a weight patch, it was made from the committed model.onnx and loads."""
    pkg = Path(funnelrank.models.__file__).parent / PACKAGED_RERANKER
    if not (pkg / PATCH_FILE).is_file():
        pytest.skip("the packaged default reranker has no weight patch")
    with np.load(pkg / PATCH_FILE, allow_pickle=False) as z:
        assert str(z["base_sha256"]) == file_sha256(pkg / "model.onnx")
    path = default_reranker_path()
    assert path != pkg and (path / "model.onnx").is_file()
    assert default_reranker_path() == path  # second call reuses the cached copy


def test_patched_copy_is_written_once_and_repaired(pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from funnelrank.models import _patched_copy

    base, trained, x = pair
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "model.onnx").write_bytes(base.read_bytes())
    for name in ("tokenizer.json", "config.json", "MODEL_CARD.md"):
        (pkg / name).write_text("{}")
    make_patch(pkg / "model.onnx", trained, pkg / PATCH_FILE)
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "cache"))
    out = _patched_copy(pkg, pkg / PATCH_FILE)
    assert out.parent == tmp_path / "cache" / "models" and (out / "MODEL_CARD.md").is_file()
    assert np.max(np.abs(_run(out / "model.onnx", x) - _run(trained, x))) < 0.01
    stamp = (out / "model.onnx").stat().st_mtime_ns
    assert _patched_copy(pkg, pkg / PATCH_FILE) == out and (out / "model.onnx").stat().st_mtime_ns == stamp
    (out / "model.onnx").unlink()  # damaged by hand: rebuilt on the next load
    assert (_patched_copy(pkg, pkg / PATCH_FILE) / "model.onnx").is_file()
