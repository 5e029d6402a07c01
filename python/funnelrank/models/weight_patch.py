"""Weight patches: ship a retrained model as the weights that changed, applied over the model in the package.

The default reranker's ONNX file was committed once (issue 5: "added once, not re-added on every retrain").
A retrain changes only some weights (the joint layers and the score head) and never the graph, so a retrain
ships as a small patch file next to the committed ``model.onnx``:

* :func:`make_patch` compares a freshly exported ``trained`` model with the committed ``base`` one. Both must
  have the same graph (nodes, initializer names, shapes and types), or it raises ValueError. Every initializer
  that differs goes into the patch: small ones exactly, large float ones as an int8 delta from the base with
  one float32 scale per row (so the patch is about a quarter of the changed weights' fp16 size).
* :func:`apply_patch` checks that the base is the exact file the patch was made from (SHA-256), rebuilds the
  changed initializers and writes the patched model atomically.

The patch file is a NumPy ``.npz`` archive (no pickled objects). The error of the int8 delta is bounded by
half a quantization step per weight; :func:`make_patch` reports the largest one, and quality is measured on
the patched model (the one users get), never on the unpatched export.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnelrank.files import atomic_writer, file_sha256

__all__ = ["PATCH_FORMAT", "PatchStats", "apply_patch", "make_patch"]

PATCH_FORMAT = "funnelrank-weight-patch-v1"
"""Format tag stored in every patch file."""

_QUANTIZE_MIN_ELEMENTS = 1024  # smaller tensors (biases, LayerNorm, score scale) are stored exactly
_FLOAT_TYPES = (np.float16, np.float32)


@dataclass(frozen=True)
class PatchStats:
    """What :func:`make_patch` wrote."""

    tensors: int
    """Initializers that differ from the base (all of them are in the patch)."""
    elements: int
    """Weights in those initializers."""
    max_abs_error: float
    """Largest |patched - trained| over every weight (0.0 when nothing was quantized)."""
    size_bytes: int
    """Size of the patch file."""


def _onnx():  # type: ignore[no-untyped-def]
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is a declared dependency
        raise ImportError("applying a weight patch needs the `onnx` package: pip install onnx") from exc
    return onnx, numpy_helper


def _load(path: Path):  # type: ignore[no-untyped-def]
    onnx, _ = _onnx()
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(f"{path} is not a readable ONNX model: {exc}") from exc


def _graph_signature(model) -> tuple:  # type: ignore[no-untyped-def]
    """Everything of a graph except initializer values."""
    g = model.graph
    nodes = tuple((n.op_type, n.domain, tuple(n.input), tuple(n.output), tuple(a.SerializeToString() for a in n.attribute))
                  for n in g.node)
    inits = tuple((i.name, tuple(i.dims), i.data_type) for i in g.initializer)
    io = tuple(v.SerializeToString() for v in (*g.input, *g.output))
    return nodes, inits, io


def _quantize_delta(base: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 delta with one scale per row (first axis); returns (q, scale, reconstructed new)."""
    rows = base.shape[0] if base.ndim > 1 else 1
    b32 = base.astype(np.float32).reshape(rows, -1)
    delta = new.astype(np.float32).reshape(rows, -1) - b32
    scale = (np.abs(delta).max(axis=1) / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(delta / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale, _rebuild(base, q, scale)


def _rebuild(base: np.ndarray, q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """base + q * scale per row, in the base's dtype (what apply_patch writes and make_patch reports)."""
    rows = base.shape[0] if base.ndim > 1 else 1
    if q.shape != (rows, base.size // rows) or scale.shape != (rows,):
        raise ValueError("weight patch does not fit its base tensor")
    b32 = base.astype(np.float32).reshape(rows, -1)
    return (b32 + q.astype(np.float32) * scale[:, None]).astype(base.dtype).reshape(base.shape)


def make_patch(base: str | os.PathLike[str], trained: str | os.PathLike[str], out: str | os.PathLike[str],
               *, quantize: bool = True) -> PatchStats:
    """Write the patch that turns ONNX model `base` into (approximately, see module doc) `trained`.

    `quantize=False` stores every changed tensor exactly (the patched model is then bit-identical)."""
    _, numpy_helper = _onnx()
    base_path, trained_path = Path(base), Path(trained)
    bm, tm = _load(base_path), _load(trained_path)
    if _graph_signature(bm) != _graph_signature(tm):
        raise ValueError(f"{trained_path} and {base_path} have different graphs; a weight patch only carries weights "
                         "(re-export with the same exporter and precision)")
    arrays: dict[str, np.ndarray] = {
        "format": np.array(PATCH_FORMAT), "base_sha256": np.array(file_sha256(base_path))}
    names: list[str] = []
    elements, worst = 0, 0.0
    for bi, ti in zip(bm.graph.initializer, tm.graph.initializer):
        b, t = numpy_helper.to_array(bi), numpy_helper.to_array(ti)
        if np.array_equal(b, t):
            continue
        i = len(names)
        names.append(ti.name)
        elements += t.size
        if quantize and t.dtype.type in _FLOAT_TYPES and t.size >= _QUANTIZE_MIN_ELEMENTS:
            q, scale, rebuilt = _quantize_delta(b, t)
            arrays[f"q{i}"], arrays[f"s{i}"] = q, scale
            worst = max(worst, float(np.max(np.abs(rebuilt.astype(np.float32) - t.astype(np.float32)))))
        else:
            arrays[f"v{i}"] = t
    arrays["names"] = np.array(names, dtype=np.str_)
    out_path = Path(out)
    with atomic_writer(out_path) as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return PatchStats(tensors=len(names), elements=elements, max_abs_error=worst,
                      size_bytes=out_path.stat().st_size)


def apply_patch(base: str | os.PathLike[str], patch: str | os.PathLike[str], out: str | os.PathLike[str]) -> int:
    """Write `base` with the weights of `patch` to `out` (atomically); returns the number of tensors replaced.

    Raises FileNotFoundError for a missing file, ValueError for a corrupt patch, a patch of another format, or a
    patch made from a different base model."""
    _, numpy_helper = _onnx()
    base_path, patch_path = Path(base), Path(patch)
    if not patch_path.is_file():
        raise FileNotFoundError(f"no weight patch at {patch_path}")
    try:
        with np.load(patch_path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{patch_path} is not a readable weight patch: {exc}") from exc
    if str(data.get("format", "")) != PATCH_FORMAT:
        raise ValueError(f"{patch_path} is not a {PATCH_FORMAT} file")
    want = str(data["base_sha256"])
    got = file_sha256(base_path)
    if got != want:
        raise ValueError(f"{patch_path} was made for another base model (sha256 {want[:12]}..., "
                         f"{base_path} has {got[:12]}...)")
    model = _load(base_path)
    by_name = {init.name: init for init in model.graph.initializer}
    names = [str(n) for n in data["names"]]
    for i, name in enumerate(names):
        init = by_name.get(name)
        if init is None:
            raise ValueError(f"{patch_path}: the base model has no initializer {name!r}")
        b = numpy_helper.to_array(init)
        if f"v{i}" in data:
            new = data[f"v{i}"]
            if new.shape != b.shape or new.dtype != b.dtype:
                raise ValueError(f"{patch_path}: tensor {name!r} does not fit its base tensor")
        elif f"q{i}" in data and f"s{i}" in data:
            new = _rebuild(b, data[f"q{i}"], data[f"s{i}"])
        else:
            raise ValueError(f"{patch_path}: tensor {name!r} has no values")
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new), name))
    with atomic_writer(Path(out)) as fh:
        fh.write(model.SerializeToString())
    return len(names)
