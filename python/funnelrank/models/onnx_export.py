"""The one torch -> ONNX export step every funnelrank exporter uses (bi-encoder, cross-encoder, trained
reranker): the legacy TorchScript exporter, dynamic batch and sequence axes on every input, constant
folding. Needs torch (the ``dev`` extra); never imported on the query path."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["torch_to_onnx"]


def torch_to_onnx(
    module: Any,
    example: tuple[Any, ...],
    path: str | os.PathLike[str],
    *,
    input_names: Sequence[str],
    output_name: str,
    output_axes: Mapping[int, str],
    opset: int,
) -> None:
    """Export `module` called on the `example` tensors to `path`.

    Every input gets dynamic axes 0 = ``batch`` and 1 = ``sequence``; the one output gets `output_axes`
    (e.g. ``{0: "batch"}`` for logits). The legacy (TorchScript) exporter is deprecated but needs no
    onnxscript; its tracer warnings are about shape checks that are constant for encoder-only models and
    are silenced. Callers check the result against PyTorch.
    """
    import torch

    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes[output_name] = dict(output_axes)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            os.fspath(path),
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
