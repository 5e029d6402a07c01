"""Export a Hugging Face sequence classifier (a cross-encoder) to the directory `CrossEncoder` loads.

Writes ``model.onnx`` (fp32, dynamic batch and sequence axes), ``config.json``, ``tokenizer.json`` (and
``tokenizer_config.json`` when the source has one) into a fresh directory, atomically (a temporary
sibling directory renamed into place), then checks that ONNX Runtime reproduces PyTorch's logits.

Needs the dev extra (torch, transformers); never imported on the query path::

    python -m funnelrank.models.export_cross_encoder SRC_DIR OUT_DIR [--num-labels 1] [--no-token-type-ids]
                                                  [--no-optimize] [--cls-only | --whole-graph]

The graph is fused by ONNX Runtime's transformer optimizer unless ``--no-optimize`` (see `optimize_onnx`).
Where the model's layout allows it the last layer computes only the [CLS] row the head reads (same logits,
about 14% less compute for 6 layers; `funnelrank.models.cls_only`); ``--whole-graph`` exports every row.

`SRC_DIR` is a transformers checkpoint. A bare encoder (e.g. all-MiniLM-L6-v2, ``BertModel``) gets a
freshly initialised classification head (seeded by ``--seed``): useful for speed work, not for ranking.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.files import atomic_directory
from funnelrank.models.onnx_export import torch_to_onnx

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXPORT_OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _wrapper(model: Any, with_token_type_ids: bool) -> Any:
    import torch

    class _Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if with_token_type_ids:
                kwargs["token_type_ids"] = token_type_ids
            return self.model(**kwargs).logits

    return _Logits().eval()


def export_onnx(model: Any, onnx_path: str | os.PathLike[str], *, token_type_ids: bool | None = None,
                cls_only: bool | None = None) -> bool:
    """Export `model` (a transformers ``*ForSequenceClassification``) to `onnx_path`, fp32.

    `token_type_ids`: whether the graph takes token type ids (default: when the model has more than one
    token type). Returns that choice. Batch and sequence axes are dynamic.
    `cls_only`: compute the last layer on the [CLS] row only (:mod:`funnelrank.models.cls_only`; same logits);
    None (default): where the model's layout allows it; True: required (a model type it does not know raises
    ValueError); False: the whole graph.
    """
    import torch

    if token_type_ids is None:
        token_type_ids = int(getattr(model.config, "type_vocab_size", 0) or 0) > 1
    model.eval()
    wrapped = None
    if cls_only is not False:
        from funnelrank.models.cls_only import cls_only_logits

        wrapped = cls_only_logits(model)
        if wrapped is None and cls_only:
            raise ValueError(f"cannot cut the last layer of a {type(model).__name__} "
                             f"(model_type {getattr(model.config, 'model_type', '?')!r}) to its [CLS] row")
    if wrapped is None:
        wrapped = _wrapper(model, token_type_ids)
    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(min(5, vocab - 1), vocab, (2, 16), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0  # a padded row, so the mask path is traced
    names = _INPUTS if token_type_ids else _INPUTS[:2]
    args: tuple[Any, ...] = (ids, mask, torch.zeros_like(ids)) if token_type_ids else (ids, mask)
    # check_onnx_matches verifies the result against PyTorch.
    torch_to_onnx(wrapped, args, onnx_path, input_names=names, output_name="logits", output_axes={0: "batch"},
                  opset=EXPORT_OPSET)
    return bool(token_type_ids)


# transformers model types whose encoders ONNX Runtime's transformer optimizer fuses as "bert".
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "electra", "camembert", "distilbert", "mpnet"}


def optimize_onnx(onnx_path: str | os.PathLike[str], config: Any) -> dict[str, int]:
    """Rewrite `onnx_path` in place with ONNX Runtime's transformer optimizer (fused embedding+LayerNorm,
    attention, skip-LayerNorm and bias-GELU kernels; ``bench/bench_rerank_workers.py`` measures the gain).

    Only graph fusions (``opt_level=0``), so the file stays portable across ONNX Runtime builds and
    providers. Returns the fused-operator counts; leaves the file unchanged (and returns ``{}``) for model
    types the optimizer does not know. The caller re-checks the result against PyTorch.
    """
    model_type = str(getattr(config, "model_type", ""))
    if model_type not in _BERT_LIKE:
        return {}
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimize_model(
            os.fspath(onnx_path),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=0,
        )
    fused = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    tmp = Path(os.fspath(onnx_path) + ".opt")
    optimized.save_model_to_file(os.fspath(tmp))
    os.replace(tmp, onnx_path)
    return fused


def check_onnx_matches(model: Any, onnx_path: str | os.PathLike[str], *, atol: float = 1e-4) -> float:
    """Run random padded batches through PyTorch and ONNX Runtime; raise if logits differ by more than `atol`.

    Returns the largest absolute difference seen.
    """
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    rng = np.random.default_rng(1)
    vocab = int(model.config.vocab_size)
    worst = 0.0
    for batch, seq in ((1, 7), (3, 33)):
        ids = rng.integers(min(5, vocab - 1), vocab, (batch, seq)).astype(np.int64)
        mask = np.ones_like(ids)
        mask[-1, seq // 2 :] = 0
        types = np.zeros_like(ids)
        types[:, seq // 3 :] = 1 if int(getattr(model.config, "type_vocab_size", 1) or 1) > 1 else 0
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        kwargs = {k: torch.from_numpy(v) for k, v in feed.items() if k in names}
        with torch.no_grad():
            ref = model(**kwargs).logits.numpy()
        got = session.run(["logits"], {k: v for k, v in feed.items() if k in names})[0]
        worst = max(worst, float(np.max(np.abs(ref - got))))
    if worst > atol:
        raise RuntimeError(f"ONNX export of {onnx_path} differs from PyTorch by {worst:.2e} (> {atol})")
    return worst


def export_cross_encoder(
    source: str | os.PathLike[str] | Any,
    out_dir: str | os.PathLike[str],
    *,
    tokenizer_dir: str | os.PathLike[str] | None = None,
    num_labels: int | None = None,
    token_type_ids: bool | None = None,
    seed: int = 0,
    overwrite: bool = False,
    optimize: bool = True,
    cls_only: bool | None = None,
) -> Path:
    """Export a checkpoint directory (or an in-memory transformers model) to a `CrossEncoder` directory.

    Args:
        source: a transformers checkpoint directory, or a loaded ``*ForSequenceClassification`` model
            (then `tokenizer_dir` must name the directory holding its ``tokenizer.json``).
        out_dir: the directory to create (it must not exist unless `overwrite`).
        tokenizer_dir: where ``tokenizer.json`` comes from (default: `source`).
        num_labels: head size when loading `source` from disk (default: the checkpoint's own).
        token_type_ids: whether the ONNX graph takes token type ids (default: the model has > 1 type).
        seed: seeds a freshly initialised classification head.
        overwrite: replace an existing `out_dir`.
        optimize: fuse the graph with ONNX Runtime's transformer optimizer (see `optimize_onnx`).
        cls_only: the last layer computes only the [CLS] row the head reads (`funnelrank.models.cls_only`);
            the logits are checked against the whole PyTorch model like any export. None (default): when
            the model's layout allows it (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA), else the whole graph;
            True: required; False: always the whole graph.

    Returns the output directory. Raises if ONNX Runtime does not reproduce PyTorch within 1e-4.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    if isinstance(source, (str, os.PathLike)):
        src = Path(source)
        if not src.is_dir():
            raise FileNotFoundError(f"no checkpoint directory at {src}")
        torch.manual_seed(seed)
        kwargs: dict[str, Any] = {"attn_implementation": "eager"}
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        model = AutoModelForSequenceClassification.from_pretrained(src, **kwargs)
        tok_src = Path(tokenizer_dir) if tokenizer_dir is not None else src
    else:
        model = source
        if tokenizer_dir is None:
            raise ValueError("exporting an in-memory model needs tokenizer_dir (the directory with tokenizer.json)")
        tok_src = Path(tokenizer_dir)
    if not (tok_src / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {tok_src}")
    model.eval()

    with atomic_directory(out, overwrite=overwrite) as tmp:
        export_onnx(model, tmp / "model.onnx", token_type_ids=token_type_ids, cls_only=cls_only)
        if optimize:
            optimize_onnx(tmp / "model.onnx", model.config)
        check_onnx_matches(model, tmp / "model.onnx")
        config = model.config.to_dict()
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
        shutil.copyfile(tok_src / "tokenizer.json", tmp / "tokenizer.json")
        if (tok_src / "tokenizer_config.json").is_file():
            shutil.copyfile(tok_src / "tokenizer_config.json", tmp / "tokenizer_config.json")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m funnelrank.models.export_cross_encoder``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="transformers checkpoint directory")
    parser.add_argument("out_dir", help="output directory for model.onnx, config.json, tokenizer.json")
    parser.add_argument("--num-labels", type=int, default=None, help="head size (default: the checkpoint's)")
    parser.add_argument("--no-token-type-ids", action="store_true", help="export a graph without token_type_ids")
    parser.add_argument("--seed", type=int, default=0, help="seed for a freshly initialised head")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    parser.add_argument("--no-optimize", action="store_true",
                        help="skip ONNX Runtime's transformer optimizer (fused attention/LayerNorm/GELU)")
    cut = parser.add_mutually_exclusive_group()
    cut.add_argument("--cls-only", action="store_const", const=True, dest="cls_only", default=None,
                     help="require the last layer on the [CLS] row only (same logits, less compute; the default "
                          "where the model's layout allows it)")
    cut.add_argument("--whole-graph", action="store_const", const=False, dest="cls_only",
                     help="export every row of the last layer")
    args = parser.parse_args(argv)
    out = export_cross_encoder(
        args.source,
        args.out_dir,
        num_labels=args.num_labels,
        token_type_ids=False if args.no_token_type_ids else None,
        seed=args.seed,
        overwrite=args.overwrite,
        optimize=not args.no_optimize,
        cls_only=args.cls_only,
    )
    print(f"exported {args.source} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
