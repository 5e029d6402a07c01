"""`train`: fine-tune the joint layers of the segment cross-encoder on the prepared groups.

The lower (per-segment) layers are frozen, so their states come from the cache and each step runs only
the joint layers. Loss per group (1 positive + negatives): listwise cross-entropy on the labels, plus
`--kd` x KL(teacher || student) where the teacher is the bi-encoder's cosine x 20, plus `--bce` x pointwise
BCE (keeps sigmoid scores meaningful for a relevance floor). Checkpoints are written atomically every
`--ckpt-every` steps and at the end; `--resume` continues from the last one. `--max-minutes` bounds the run.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from funnelrank.train.model import SegmentCrossEncoder

TEACHER_SCALE = 20.0


class Cache:
    """Read side of the state cache written by `prepare`."""

    def __init__(self, work: Path) -> None:
        meta = json.loads((work / "cache" / "meta.json").read_text())
        self.n_separate = int(meta["n_separate"])
        self.states = np.load(work / "cache" / "states.npy", mmap_mode="r")
        self.emb = np.load(work / "cache" / "emb.npy")
        off = work / "cache" / "offsets.npy"
        if not off.exists():
            raise FileNotFoundError(f"{off} missing: rerun prepare")
        self.offsets = np.load(off)

    def seg(self, i: int) -> np.ndarray:
        return self.states[self.offsets[i]: self.offsets[i + 1]]


def pair_batch(cache: Cache, pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate cached query and passage states of each pair, padded: (x, attention_mask, segment)."""
    lens = [(int(cache.offsets[q + 1] - cache.offsets[q]), int(cache.offsets[p + 1] - cache.offsets[p])) for q, p in pairs]
    L = max(a + b for a, b in lens)
    x = np.zeros((len(pairs), L, cache.states.shape[1]), dtype=np.float32)
    am = np.zeros((len(pairs), L), dtype=np.int64)
    seg = np.zeros((len(pairs), L), dtype=np.int64)
    for r, ((q, p), (a, b)) in enumerate(zip(pairs, lens)):
        x[r, :a] = cache.seg(q)
        x[r, a:a + b] = cache.seg(p)
        am[r, :a + b] = 1
        seg[r, a:a + b] = 1
    return torch.from_numpy(x), torch.from_numpy(am), torch.from_numpy(seg)


def score_pairs(model: SegmentCrossEncoder, cache: Cache, pairs: list[tuple[int, int]], batch: int = 64) -> np.ndarray:
    """Logits of many pairs (inference mode, length-sorted batches)."""
    order = sorted(range(len(pairs)), key=lambda i: int(cache.offsets[pairs[i][1] + 1] - cache.offsets[pairs[i][1]]))
    out = np.zeros(len(pairs), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            x, am, seg = pair_batch(cache, [pairs[i] for i in idx])
            out[idx] = model.joint(x, am, seg).numpy()
    return out


def _dcg(labels: list[int]) -> float:
    return sum(g / math.log2(r + 2) for r, g in enumerate(labels))


def validate(model: SegmentCrossEncoder, cache: Cache, val: dict, teacher: bool = False,
             max_queries: int = 60) -> dict[str, float]:
    """nDCG@10 (scifact held-out, reranking BM25 top-30), MRR@10 (squad held-out BM25 top-20, wikiqa dev)."""
    res = {}
    for name, items in val.items():
        items = items[:max_queries]
        pairs = [(it["q"], d) for it in items for d in it["docs"]]
        if teacher:
            s = np.array([float(cache.emb[q] @ cache.emb[d]) for q, d in pairs])
        else:
            s = score_pairs(model, cache, pairs)
        k, vals = 0, []
        for it in items:
            sc = s[k:k + len(it["docs"])]
            k += len(it["docs"])
            ranked = [it["labels"][i] for i in np.argsort(-sc, kind="stable")]
            if name == "scifact":
                ideal = _dcg([1] * min(10, it["n_rel"]))
                vals.append(_dcg(ranked[:10]) / ideal if ideal else 0.0)
            else:
                vals.append(next((1.0 / (r + 1) for r, g in enumerate(ranked[:10]) if g), 0.0))
        res[f"{name}_{'ndcg10' if name == 'scifact' else 'mrr10'}"] = round(float(np.mean(vals)), 4)
    res["mean"] = round(float(np.mean(list(res.values()))), 4) if res else 0.0
    return res


def save_checkpoint(path: Path, obj: dict) -> None:
    """torch.save `obj` to `path` atomically (temporary file, fsync, rename)."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def trainable_state(model: SegmentCrossEncoder) -> dict[str, torch.Tensor]:
    """The parameters training changes (joint layers, cross-attention biases, score scale/bias)."""
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def train(work: Path, out: Path, max_minutes: float, batch_groups: int = 4, lr: float = 5e-5,
          head_lr: float = 3e-3, kd: float = 1.0, bce: float = 0.2, mix: str = "squad:0.4,scifact:0.35,wikiqa:0.25",
          ckpt_every: int = 100, eval_every: int = 300, max_steps: int = 100000, resume: bool = False,
          seed: int = 0, val_queries: int = 60, cross_bias_init: float = -6.0, interaction: bool = False,
          cross_lr: float | None = None) -> None:
    """Run (or resume) training; see module doc. `cross_bias_init` opens the joint layers' cross-segment
    attention at the start (-6: nearly closed, the bi-encoder); `interaction` adds the zero-initialised
    [CLS] term to the head; `cross_lr` is the cross-segment biases' learning rate (default `head_lr`)."""
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(work)
    groups = json.loads((work / "train_groups.json").read_text())
    val = json.loads((work / "val.json").read_text())
    by_src: dict[str, list[dict]] = {}
    for g in groups:
        by_src.setdefault(g["src"], []).append(g)
    weights = {k: float(v) for k, v in (kv.split(":") for kv in mix.split(","))}
    srcs = [s for s in weights if s in by_src]
    model = SegmentCrossEncoder.from_base(n_separate=cache.n_separate, cross_bias_init=cross_bias_init,
                                          interaction=interaction)
    for n, p in model.named_parameters():
        p.requires_grad = n.startswith(("cross_bias", "scale", "bias", "interact")) or (
            n.startswith("layers.") and int(n.split(".")[1]) >= cache.n_separate)
    head = [p for n, p in model.named_parameters()
            if p.requires_grad and not n.startswith(("layers.", "cross_bias"))]
    body = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("layers.")]
    cross = [model.cross_bias]
    rates = [lr, head_lr, head_lr if cross_lr is None else cross_lr]
    opt = torch.optim.AdamW([{"params": body, "lr": rates[0]}, {"params": head, "lr": rates[1], "weight_decay": 0.0},
                             {"params": cross, "lr": rates[2], "weight_decay": 0.0}])
    step, log = 0, []
    ckpt = out / "checkpoint.pt"
    rng = random.Random(seed)
    if resume and ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        model.load_state_dict(st["params"], strict=False)
        opt.load_state_dict(st["opt"])
        step, log = st["step"], st["log"]
        rng.setstate(st["rng"])
        print(f"resumed at step {step}")
    logf = (out / "train_log.jsonl").open("a")
    if step == 0:
        v0 = {"step": 0, "teacher": validate(model, cache, val, teacher=True, max_queries=val_queries),
              "model": validate(model, cache, val, max_queries=val_queries)}
        print(json.dumps(v0), flush=True)
        logf.write(json.dumps(v0) + "\n")
    t_end = time.time() + 60 * max_minutes
    warm = 30
    bar = tqdm(desc="train", unit="step", initial=step)
    run_loss, n_pairs, t0 = 0.0, 0, time.time()
    while step < max_steps and time.time() < t_end:
        model.train()
        for g, base in zip(opt.param_groups, rates):
            g["lr"] = base * min(1.0, (step + 1) / warm)
        batch = [rng.choice(by_src[rng.choices(srcs, [weights[s] for s in srcs])[0]]) for _ in range(batch_groups)]
        pairs = [(g["q"], d) for g in batch for d in g["docs"]]
        x, am, seg = pair_batch(cache, pairs)
        logits = model.joint(x, am, seg).view(len(batch), -1)
        labels = torch.tensor([g["labels"] for g in batch], dtype=torch.float32)
        teacher = torch.tensor([g["teacher"] for g in batch], dtype=torch.float32) * TEACHER_SCALE
        logp = F.log_softmax(logits, dim=-1)
        loss = -(logp * labels / labels.sum(1, keepdim=True)).sum(1).mean()
        if kd:
            use = torch.tensor([float(g.get("kd", True)) for g in batch])  # near-miss groups take none
            kl = F.kl_div(logp, F.log_softmax(teacher, dim=-1), log_target=True, reduction="none").sum(1)
            loss = loss + kd * (kl * use).sum() / len(batch)
        if bce:
            loss = loss + bce * F.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        n_pairs += len(pairs)
        run_loss = 0.98 * run_loss + 0.02 * float(loss.detach()) if step > 1 else float(loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{run_loss:.3f}", pairs_s=f"{n_pairs / (time.time() - t0):.1f}")
        last = step >= max_steps or time.time() >= t_end
        if step % eval_every == 0 or last:
            rec = {"step": step, "pairs_s": round(n_pairs / (time.time() - t0), 2), "loss": round(run_loss, 4),
                   "cross_bias": [round(float(v), 2) for v in model.cross_bias.mean(1)],
                   "scale": round(float(model.scale), 2), "bias": round(float(model.bias), 2),
                   "model": validate(model, cache, val, max_queries=val_queries)}
            log.append(rec)
            print(json.dumps(rec), flush=True)
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            save_checkpoint(out / f"step{step}.pt", {"params": trainable_state(model), "step": step})
        if step % ckpt_every == 0 or last:
            save_checkpoint(ckpt, {"params": trainable_state(model), "opt": opt.state_dict(), "step": step, "log": log,
                         "rng": rng.getstate()})
    bar.close()
