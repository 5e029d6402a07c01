"""Derived variants of a cross-encoder's ONNX file, made once and cached (keyed by the source file's SHA-256).

* :func:`fp32_weights`: a file whose float16-stored weights (each followed by a Cast to float, the default
  reranker's ``fp16w`` layout) are stored as float32 instead: the same compute, in the form quantizers read.
* :func:`int8_variant`: ONNX Runtime's dynamic int8 quantization (per-channel MatMul weights, activations
  quantized at run time) of that fp32 form; ``CrossEncoder.from_pretrained(..., precision="int8")`` loads it.

Whether a variant keeps the ranking is measured, not assumed: ``funnelrank optimize``.

    >>> int8_variant(model_dir / "model.onnx")              # doctest: +SKIP
    PosixPath('/root/.cache/funnelrank/variants/43ba1b10beda667e/model.int8.onnx')
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.files import atomic_writer, cache_dir, file_sha256

__all__ = ["LOAD_VARIANTS", "fp32_weights", "int8_variant"]

LOAD_VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "int8": {"precision": "int8"},
    "states": {"reuse_passage_states": True},
    "states-prefix": {"reuse_passage_states": "prefix"},
}
"""A model's derived variants by name -> the ``CrossEncoder.from_pretrained`` options that load each: the
guard's variants (:data:`funnelrank.eval.optimize.VARIANTS`) and a cascade's first passes
(:mod:`funnelrank.rerank.cascade`)."""


def fp32_weights(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Write `src` with every float16 weight that feeds a Cast to float stored as float32 (Cast removed) to
    `dst`; returns how many weights changed form."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    fp16 = {i.name: i for i in graph.initializer if i.data_type == TensorProto.FLOAT16}
    casts = [n for n in graph.node if n.op_type == "Cast" and len(n.input) == 1 and n.input[0] in fp16]
    for node in casts:
        weight = numpy_helper.to_array(fp16[node.input[0]]).astype(np.float32)
        graph.initializer.remove(fp16[node.input[0]])
        graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
        graph.node.remove(node)
    onnx.save(model, str(dst))
    return len(casts)


def int8_variant(onnx_path: str | os.PathLike[str]) -> Path:
    """The dynamic-int8 quantization of `onnx_path` (see the module doc), cached; returns its path."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path = Path(onnx_path)
    out = cache_dir("variants", file_sha256(onnx_path)[:16]) / "model.int8.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        fp32_weights(onnx_path, fp32)
        staged = Path(tmp) / "model.int8.onnx"
        quantize_dynamic(str(fp32), str(staged), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1})  # 1: float
        with atomic_writer(out) as f, staged.open("rb") as source:
            while chunk := source.read(1 << 20):
                f.write(chunk)
    return out
