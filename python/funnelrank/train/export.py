"""`export`: write a trained segment cross-encoder as a `CrossEncoder` model directory.

Writes ``model.onnx`` (inputs input_ids / attention_mask / token_type_ids, output ``logits`` (B, 1)),
``tokenizer.json`` (the base model's), ``tokenizer_config.json`` (model_max_length) and ``config.json``, then
checks ONNX Runtime against PyTorch. Precision (``--precision``):

* ``fp32``: plain float weights (~90 MB).
* ``fp16w``: weights stored as float16, each followed by a Cast to float; ONNX Runtime folds the casts when
  the session loads, so compute is fp32 at fp32 speed and the file is half the size.
* ``int8``: dynamic int8 quantization of the MatMul weights (onnxruntime.quantization), int8 compute.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from funnelrank.models.onnx_export import torch_to_onnx
from funnelrank.train.model import SegmentCrossEncoder, base_model_dir
from funnelrank.train.train import save_checkpoint

OPSET = 17
PRECISIONS = ("fp32", "fp16w", "int8")


def has_interaction(params: dict[str, torch.Tensor]) -> bool:
    """Whether trained parameters come from a model with the interaction head (``interact.*``)."""
    return any(k.startswith("interact.") for k in params)


def load_trained(checkpoint: Path | None, n_separate: int = 4, seed: int = 0) -> SegmentCrossEncoder:
    """The base model with a checkpoint's trained parameters applied (None: the untrained start); the
    interaction head is built when the checkpoint has one."""
    state = torch.load(checkpoint, weights_only=False) if checkpoint is not None else None
    model = SegmentCrossEncoder.from_base(n_separate=n_separate,
                                          interaction=state is not None and has_interaction(state["params"]))
    if checkpoint is not None and state is not None:
        missing = set(state["params"]) - set(dict(model.named_parameters()))
        if missing:
            raise ValueError(f"{checkpoint}: unknown parameters {sorted(missing)[:3]}")
        model.load_state_dict(state["params"], strict=False)
    return model.eval()


def interpolate_params(trained: dict[str, torch.Tensor], start: SegmentCrossEncoder,
                       alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT (Wortsman et al., CVPR 2022): ``alpha * trained + (1 - alpha) * start`` for each trained
    parameter. Weight-space ensembling with the zero-shot start keeps more out-of-distribution quality than
    the fine-tuned weights alone, at a small in-distribution cost."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    params = dict(start.named_parameters())
    unknown = set(trained) - set(params)
    if unknown:
        raise ValueError(f"unknown parameters {sorted(unknown)[:3]}")
    bad = [k for k, v in trained.items() if v.shape != params[k].shape]
    if bad:
        raise ValueError(f"parameter {bad[0]!r} has shape {tuple(trained[bad[0]].shape)}, "
                         f"the model has {tuple(params[bad[0]].shape)}")
    return {k: alpha * v + (1.0 - alpha) * params[k].detach() for k, v in trained.items()}


def interpolate_checkpoint(checkpoint: Path, out: Path, alpha: float = 0.5, n_separate: int = 4) -> None:
    """Write `interpolate_params` of a checkpoint and the untrained start (the bi-encoder) as a checkpoint,
    atomically."""
    state = torch.load(checkpoint, weights_only=False)
    start = SegmentCrossEncoder.from_base(n_separate=n_separate, interaction=has_interaction(state["params"]))
    mixed = interpolate_params(state["params"], start, alpha)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, {"params": mixed, "step": state.get("step"), "wise_ft": {"from": str(checkpoint), "alpha": alpha}})


def randomize(model: SegmentCrossEncoder, seed: int = 0) -> SegmentCrossEncoder:
    """Same architecture, random weights (the speed peer)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02 + (1.0 if p.ndim == 1 and p.shape[0] == 384 else 0.0))
    return model


def describe(model: torch.nn.Module) -> dict:
    """The ``"funnelrank"`` block of an exported model's config.json: the per-segment layer count (what the
    split scorer cuts at) and what the score is."""
    from funnelrank.train.judge import FEATURES, LateInteractionJudge

    if isinstance(model, LateInteractionJudge):
        space = (f", MaxSim in a learned rank-{model.head.rank} space over the token states"
                 if model.head.rank else "")
        return {"n_separate_layers": model.encoder.n_separate, "head": "late-interaction",
                "channels": [f for f, k in zip(FEATURES, model.head.keep.tolist()) if k],
                "late_interaction_rank": model.head.rank,
                "score": "sigmoid(linear(pooled cosine, importance-weighted match quality, soft minimum of match "
                         f"quality, idf-weighted MaxSim, idf-weighted exact coverage){space})"}
    if not isinstance(model, SegmentCrossEncoder):
        raise TypeError(f"cannot export {type(model).__name__}")
    return {"n_separate_layers": model.n_separate,
            "score": "sigmoid(scale * cos(mean(query segment), mean(passage segment)) + bias"
                     + (" + w . joint(query [CLS]))" if model.interact is not None else ")")}


def export_fp32(model: torch.nn.Module, path: Path) -> None:
    """torch -> ONNX (legacy exporter, dynamic batch and sequence axes)."""
    vocab = next(m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding))
    ids = torch.randint(min(1000, vocab // 2), min(20000, vocab), (2, 24))
    ids[:, 0] = 101
    am = torch.ones_like(ids)
    am[1, 18:] = 0
    tt = torch.zeros_like(ids)
    tt[:, 9:] = 1
    torch_to_onnx(model, (ids, am, tt), path, input_names=("input_ids", "attention_mask", "token_type_ids"),
                  output_name="logits", output_axes={0: "batch"}, opset=OPSET)


def to_fp16_weights(src: Path, dst: Path, min_size: int = 1024) -> None:
    """Store every float initializer of >= min_size elements as float16 followed by a Cast to float."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    casts, keep = [], []
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= min_size:
            arr = numpy_helper.to_array(init).astype(np.float16)
            keep.append(numpy_helper.from_array(arr, init.name + "__fp16"))
            casts.append(helper.make_node("Cast", [init.name + "__fp16"], [init.name], to=TensorProto.FLOAT,
                                          name=init.name + "__cast"))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))


def to_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization (weights int8, activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def check_matches(model: torch.nn.Module, onnx_path: Path, atol: float) -> float:
    """Largest |torch - ORT| logit difference on real tokenized pairs; raises above atol."""
    import onnxruntime as ort

    from funnelrank.train.cache import load_tokenizer

    tok = load_tokenizer()
    pairs = [("what is a flea's life cycle", "A flea can live up to a year, depending on its hosts."),
             ("capital of france", "Paris is the capital and most populous city of France."),
             ("x", "y " * 40)]
    encs = tok.encode_batch(pairs)
    L = max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), L), np.int64)
    am, tt = np.zeros_like(ids), np.zeros_like(ids)
    for r, e in enumerate(encs):
        ids[r, :len(e.ids)], am[r, :len(e.ids)], tt[r, :len(e.ids)] = e.ids, 1, e.type_ids
    with torch.no_grad():
        ref = model(torch.from_numpy(ids), torch.from_numpy(am), torch.from_numpy(tt)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input_ids": ids, "attention_mask": am, "token_type_ids": tt})[0]
    worst = float(np.max(np.abs(ref - got)))
    if worst > atol:
        raise RuntimeError(f"{onnx_path}: ONNX Runtime differs from PyTorch by {worst:.3g} (> {atol})")
    return worst


def export_model_dir(model: torch.nn.Module, out: Path, precision: str = "fp16w", max_length: int = 256,
                     extra_config: dict | None = None, overwrite: bool = False) -> Path:
    """Write a complete model directory (see module doc) atomically; returns it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        fp32 = tmp / "model.onnx"
        export_fp32(model, fp32)
        if precision != "fp32":
            other = tmp / f"model.{precision}.onnx"
            (to_fp16_weights if precision == "fp16w" else to_int8)(fp32, other)
            other.replace(fp32)
        check_matches(model, fp32, atol={"fp32": 1e-3, "fp16w": 0.05, "int8": 2.0}[precision])
        base = base_model_dir()
        shutil.copyfile(base / "tokenizer.json", tmp / "tokenizer.json")
        (tmp / "tokenizer_config.json").write_text(json.dumps(
            {"model_max_length": max_length, "do_lower_case": True, "tokenizer_class": "BertTokenizer"}, indent=2) + "\n")
        cfg = json.loads((base / "config.json").read_text())
        cfg.update({"architectures": ["FunnelrankSegmentCrossEncoder"], "num_labels": 1,
                    "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0},
                    "funnelrank": {**describe(model), "precision": precision, **(extra_config or {})}})
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
