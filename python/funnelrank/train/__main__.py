"""`python -m funnelrank.train {prepare,train,export}` (needs the dev extra; see the model card).

    prepare  encode the training texts once, mine BM25 + dense hard negatives, write groups (resumable)
    train    fine-tune the joint layers from the cache; checkpoints, --resume, --max-minutes
    export   write a CrossEncoder model directory (model.onnx, tokenizer, config) from a checkpoint
    interpolate  weight-space ensemble of a checkpoint with the untrained start (WiSE-FT)
    validate     the validation figures of a checkpoint (never a test split)
    patch    write an exported model as a weight patch over the packaged default reranker
    heldout-ids  the validation query ids held out from training (e.g. for `funnelrank eval --query-ids`)
    judge-prepare   the late-interaction judge's groups and cached final token states (resumable)
    judge-train     train the judge's head from the cache (checkpointed; rerun to resume)
    judge-validate  the judge head's validation figures (never a test split)
    judge-calibrate fit the judge's calibrated sigmoid on validation groups, folded into its last layer
    judge-export    write the judge (frozen encoder + head) as a CrossEncoder model directory
    judge-probe     an encoder's untrained cosine / MaxSim signals on the validation groups
    judge-teacher   cache a teacher encoder's token states of the training texts (resumable)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_WORK = Path(os.environ.get("FUNNELRANK_TRAIN_WORK", "/work/train-cache/run"))
JUDGE_WORK = Path(os.environ.get("FUNNELRANK_JUDGE_WORK", "/work/judge-work"))


def _checkpoint_arg(text: str) -> Path | None:
    """A checkpoint path, or None for 'none' (the untrained start)."""
    return None if text == "none" else Path(text)


def build_parser() -> argparse.ArgumentParser:
    """The command line (see module doc)."""
    p = argparse.ArgumentParser(prog="python -m funnelrank.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="encode texts, mine negatives, write groups")
    pp.add_argument("--data", type=Path, default=Path("../shared/data"))
    pp.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache/work directory (outside the repo)")
    pp.add_argument("--n-squad", type=int, default=2000, help="squad training questions")
    pp.add_argument("--n-separate", type=int, default=4, help="per-segment (frozen) layers below the joint ones")
    pp.add_argument("--max-p", type=int, default=128, help="passage tokens kept for training")
    pp.add_argument("--no-msmarco", action="store_true", help="leave out msmarco-dev-sample's train/validation splits")
    pp.add_argument("--near-misses", type=int, default=1500,
                    help="near-miss groups made from positives with WordNet swaps (0: none)")
    tp = sub.add_parser("train", help="train the joint layers")
    tp.add_argument("--work", type=Path, default=DEFAULT_WORK)
    tp.add_argument("--out", type=Path, default=None, help="checkpoint directory (default WORK/train)")
    tp.add_argument("--max-minutes", type=float, default=60.0)
    tp.add_argument("--max-steps", type=int, default=100000)
    tp.add_argument("--batch-groups", type=int, default=4, help="groups (1 pos + 7 neg) per step")
    tp.add_argument("--lr", type=float, default=5e-5)
    tp.add_argument("--head-lr", type=float, default=3e-3)
    tp.add_argument("--kd", type=float, default=1.0, help="weight of distillation from the bi-encoder")
    tp.add_argument("--bce", type=float, default=0.2, help="weight of pointwise BCE")
    tp.add_argument("--mix", default="squad:0.4,scifact:0.35,wikiqa:0.25")
    tp.add_argument("--ckpt-every", type=int, default=50)
    tp.add_argument("--eval-every", type=int, default=300)
    tp.add_argument("--resume", action="store_true")
    tp.add_argument("--cross-bias-init", type=float, default=-6.0,
                    help="initial cross-segment attention bias of the joint layers (-6: nearly closed, the bi-encoder)")
    tp.add_argument("--cross-lr", type=float, default=None, help="learning rate of the cross-segment biases "
                    "(default --head-lr)")
    tp.add_argument("--interaction", action="store_true",
                    help="add a zero-initialised linear term on the joint query [CLS] state to the score")
    tp.add_argument("--val-queries", type=int, default=60, help="validation queries per set")
    ep = sub.add_parser("export", help="export a checkpoint to a CrossEncoder model directory")
    ep.add_argument("checkpoint", type=_checkpoint_arg, help="checkpoint .pt ('none': the untrained start)")
    ep.add_argument("out", type=Path)
    ep.add_argument("--precision", choices=("fp32", "fp16w", "int8"), default="fp16w")
    ep.add_argument("--n-separate", type=int, default=4)
    ep.add_argument("--max-length", type=int, default=256)
    ep.add_argument("--random-weights", action="store_true", help="same architecture, random weights (speed peer)")
    ep.add_argument("--overwrite", action="store_true")
    ip = sub.add_parser("interpolate", help="WiSE-FT: mix a checkpoint's weights with the untrained start's")
    ip.add_argument("checkpoint", type=Path)
    ip.add_argument("out", type=Path, help="checkpoint .pt to write")
    ip.add_argument("--alpha", type=float, default=0.5, help="weight of the trained checkpoint (default 0.5)")
    ip.add_argument("--n-separate", type=int, default=4)
    vp = sub.add_parser("validate", help="validation figures of a checkpoint ('none': the untrained start)")
    vp.add_argument("checkpoint", type=_checkpoint_arg)
    vp.add_argument("--work", type=Path, default=DEFAULT_WORK)
    vp.add_argument("--val-queries", type=int, default=60, help="validation queries per set")
    hp = sub.add_parser("heldout-ids", help="print the query ids held out from training (validation), one a line",
                        description="Print the scifact train query ids that training holds out for validation "
                        "(the hashed slice of funnelrank.train.data.load_scifact), one a line: the input of "
                        "`funnelrank eval --split train --query-ids FILE` for choices made on validation data.")
    hp.add_argument("set", choices=("scifact",), help="training set")
    hp.add_argument("--data", type=Path, default=Path("../shared/data"))
    pa = sub.add_parser("patch", help="write an exported model as a weight patch over the packaged default reranker")
    pa.add_argument("trained", type=Path, help="model directory written by `export` (same precision as the base)")
    pa.add_argument("--base", type=Path, default=None,
                    help="base model directory (default: the packaged reranker-minilm-l6, whose model.onnx is kept)")
    pa.add_argument("--exact", action="store_true", help="store changed weights exactly instead of as int8 deltas")
    jp = sub.add_parser("judge-prepare", help="late-interaction judge: groups + cached token states")
    jp.add_argument("--data", type=Path, default=Path("../shared/data"))
    jp.add_argument("--work", type=Path, default=JUDGE_WORK)
    jp.add_argument("--near-misses", type=int, default=2, help="near-miss passages per training positive")
    jt = sub.add_parser("judge-train", help="train the judge's head (resumes from --out)")
    jt.add_argument("--work", type=Path, default=JUDGE_WORK)
    jt.add_argument("--out", type=Path, required=True, help="checkpoint file")
    jt.add_argument("--steps", type=int, default=1500)
    jt.add_argument("--lr", type=float, default=3e-3)
    jt.add_argument("--bce", type=float, default=0.5, help="weight of pointwise BCE")
    jt.add_argument("--qswap", type=float, default=1.0, help="weight of the query-side swap negatives")
    jt.add_argument("--drop", default="", help="comma-separated channels to leave out (ablation)")
    jt.add_argument("--seed", type=int, default=0)
    jt.add_argument("--rank", type=int, default=0,
                    help="rank of the learned late-interaction space over the token states (0: the encoder's own)")
    jt.add_argument("--distil", type=float, default=0.0,
                    help="weight of per-token MaxSim distillation from the judge-teacher cache (needs --rank)")
    jv = sub.add_parser("judge-validate", help="validation figures of a judge head checkpoint")
    jv.add_argument("checkpoint", type=Path)
    jv.add_argument("--work", type=Path, default=JUDGE_WORK)
    jv.add_argument("--floor", type=float, default=0.5)
    jc = sub.add_parser("judge-calibrate", help="fit the judge's calibrated sigmoid on validation sets")
    jc.add_argument("checkpoint", type=Path)
    jc.add_argument("out", type=Path, help="calibrated checkpoint to write")
    jc.add_argument("--work", type=Path, default=JUDGE_WORK)
    jc.add_argument("--sets", default="msmarco-validation,nearmiss-synth",
                    help="validation groups the sigmoid is fitted on (never nearmiss-val, which judges the floor)")
    je = sub.add_parser("judge-export", help="export the judge as a CrossEncoder model directory")
    je.add_argument("checkpoint", type=Path)
    je.add_argument("out", type=Path)
    je.add_argument("--work", type=Path, default=JUDGE_WORK)
    je.add_argument("--precision", choices=("fp32", "fp16w", "int8"), default="fp16w")
    je.add_argument("--overwrite", action="store_true")
    jb = sub.add_parser("judge-probe", help="an encoder's untrained cosine / MaxSim figures on validation groups")
    jb.add_argument("model_dir", type=Path, help="Hugging Face bi-encoder directory (config, weights, tokenizer)")
    jb.add_argument("--work", type=Path, default=JUDGE_WORK)
    jb.add_argument("--sets", default="msmarco-validation,nearmiss-val", help="validation groups to score")
    jh = sub.add_parser("judge-teacher", help="cache a teacher encoder's token states of the training texts")
    jh.add_argument("model_dir", type=Path, help="Hugging Face encoder directory with the base's word pieces")
    jh.add_argument("--work", type=Path, default=JUDGE_WORK)
    return p


def main() -> None:
    """Entry point."""
    a = build_parser().parse_args()
    if a.cmd == "heldout-ids":
        from funnelrank.train.data import load_scifact

        print("\n".join(load_scifact(a.data).val_qids))
        return
    import torch

    torch.set_num_threads(a.threads)
    if a.cmd.startswith("judge-"):
        _judge(a)
    elif a.cmd == "prepare":
        from funnelrank.train.prepare import prepare

        prepare(a.data, a.work, n_squad=a.n_squad, max_p=a.max_p, n_separate=a.n_separate, msmarco=not a.no_msmarco,
                near_misses=a.near_misses)
    elif a.cmd == "train":
        from funnelrank.train.train import train

        train(a.work, a.out or a.work / "train", a.max_minutes, batch_groups=a.batch_groups, lr=a.lr,
              head_lr=a.head_lr, kd=a.kd, bce=a.bce, mix=a.mix, ckpt_every=a.ckpt_every,
              eval_every=a.eval_every, max_steps=a.max_steps, resume=a.resume,
              val_queries=a.val_queries, cross_bias_init=a.cross_bias_init, interaction=a.interaction,
              cross_lr=a.cross_lr)
    elif a.cmd == "patch":
        _write_patch(a.trained, a.base, exact=a.exact)
    elif a.cmd == "interpolate":
        from funnelrank.train.export import interpolate_checkpoint

        interpolate_checkpoint(a.checkpoint, a.out, alpha=a.alpha, n_separate=a.n_separate)
        print(f"wrote {a.out}: {a.alpha} x {a.checkpoint} + {1 - a.alpha:g} x untrained start")
    elif a.cmd == "validate":
        import json

        from funnelrank.train.export import load_trained
        from funnelrank.train.train import Cache, validate

        cache = Cache(a.work)
        val = json.loads((a.work / "val.json").read_text())
        figures = validate(load_trained(a.checkpoint, n_separate=cache.n_separate), cache, val, max_queries=a.val_queries)
        figures["mean"] = round(sum(figures.values()) / len(figures), 4)
        print(json.dumps({"checkpoint": str(a.checkpoint or "none"), **figures}))
    else:
        from funnelrank.train.export import export_model_dir, load_trained, randomize

        model = load_trained(a.checkpoint, n_separate=a.n_separate)
        if a.random_weights:
            model = randomize(model)
        out = export_model_dir(model, a.out, precision=a.precision, max_length=a.max_length, overwrite=a.overwrite)
        print(f"exported {a.checkpoint or 'none'} -> {out} ({a.precision})")


def _judge(a: argparse.Namespace) -> None:
    """The judge-* subcommands (see module doc)."""
    import json

    from funnelrank.train import judge_train as jt

    if a.cmd == "judge-prepare":
        print(json.dumps(jt.prepare(a.data, a.work, near_misses=a.near_misses)))
    elif a.cmd == "judge-train":
        head = jt.train(a.work, a.out, steps=a.steps, lr=a.lr, bce_weight=a.bce, qswap_weight=a.qswap,
                        seed=a.seed, drop=tuple(x for x in a.drop.split(",") if x), rank=a.rank,
                        distil=a.distil)
        groups, cache, _idf = jt.load(a.work)
        print(json.dumps(jt.validate(head, groups, cache)))
    elif a.cmd == "judge-calibrate":
        print(json.dumps(jt.calibrate_checkpoint(a.work, a.checkpoint, a.out, tuple(a.sets.split(",")))))
    elif a.cmd == "judge-probe":
        from funnelrank.train.probe import probe

        print(json.dumps(probe(a.model_dir, jt.load_groups(a.work), tuple(a.sets.split(",")))))
    elif a.cmd == "judge-teacher":
        print(f"{len(jt.teacher_cache(a.work, a.model_dir).ids)} texts cached in {a.work / 'teacher'}")
    elif a.cmd == "judge-validate":
        groups, cache, idf = jt.load(a.work)
        print(json.dumps(jt.validate(jt.load_head(a.checkpoint, idf), groups, cache, floor=a.floor)))
    else:
        from funnelrank.train.export import export_model_dir
        from funnelrank.train.judge import LateInteractionJudge

        idf = jt.torch_idf(a.work)
        model = LateInteractionJudge.from_base(jt.load_head(a.checkpoint, idf)).eval()
        out = export_model_dir(model, a.out, precision=a.precision, overwrite=a.overwrite)
        print(f"exported {a.checkpoint} -> {out} ({a.precision})")


def _write_patch(trained: Path, base: Path | None, exact: bool) -> None:
    """Patch file + config.json of `trained` into the base directory (see funnelrank.models.weight_patch)."""
    import shutil

    from funnelrank.models import PACKAGED_RERANKER, PATCH_FILE
    from funnelrank.models.weight_patch import make_patch

    base = base or Path(__file__).resolve().parents[1] / "models" / PACKAGED_RERANKER
    stats = make_patch(base / "model.onnx", trained / "model.onnx", base / PATCH_FILE, quantize=not exact)
    shutil.copyfile(trained / "config.json", base / "config.json")
    print(f"{base / PATCH_FILE}: {stats.tensors} tensors, {stats.elements:,} weights, "
          f"{stats.size_bytes / 1e6:.1f} MB, largest weight error {stats.max_abs_error:.2g}")


if __name__ == "__main__":
    main()
