"""Train and validate the late-interaction judge's head (:mod:`funnelrank.train.judge`) on cached states.

``python -m funnelrank.train judge-prepare --work W`` builds the groups and encodes every text once;
``judge-train --work W --out CKPT`` trains the head (checkpointed every ``--save-every`` steps; rerun the
same command to resume); ``judge-validate CKPT`` prints the validation figures. Only validation data is
scored here; test sets are measured by ``funnelrank eval`` after the choice is fixed.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from funnelrank.eval.nearmiss import gates
from funnelrank.rerank.policy import clears_floor
from funnelrank.train.judge import JudgeHead, match_mask, mean_pool, token_maxsim
from funnelrank.train.judge_data import (
    P_TOKENS,
    Q_TOKENS,
    Group,
    StateCache,
    TextEncoder,
    add_near_misses,
    encode_all,
    held_out,
    idf_corpus,
    msmarco_sample,
    msmarco_train_1k,
    nearmiss_groups,
    scifact_groups,
    squad_groups,
    wikiqa_groups,
    wordpiece_idf,
)

TRAIN_SETS = ("msmarco-1k", "msmarco-train", "squad", "wikiqa", "scifact")
VAL_SETS = ("msmarco-validation", "nearmiss-val", "nearmiss-synth", "squad-val", "scifact-val")


def prepare(root: Path, work: Path, near_misses: int = 2) -> dict[str, int]:
    """Write ``work/groups.json`` (training and validation groups), ``work/idf.npy``, and the state cache."""
    work.mkdir(parents=True, exist_ok=True)
    sq_train, sq_val = squad_groups(root, n_train=1500, n_val=200, depth=10)
    sf_train, sf_val = scifact_groups(root, depth=10)
    train = (msmarco_train_1k(root) + msmarco_sample(root, "train") + sq_train + wikiqa_groups(root, "train")
             + sf_train)
    kept = [g for g in train if not held_out(g)]
    out_nm, out_q = add_near_misses([g for g in train if not g.source.startswith("scifact")], near_misses)
    nm_train = [g for g in out_nm if not held_out(g)]
    nm_val = [g for g in out_nm if held_out(g)]
    groups: dict[str, list[Group]] = {
        "train": kept + nm_train,
        "train_qswap": [g for g in out_q if not held_out(g)],
        "msmarco-validation": msmarco_sample(root, "validation"),
        "nearmiss-val": nearmiss_groups(root / "nearmiss-val"),
        "nearmiss-dev": nearmiss_groups(root / "nearmiss-dev"),
        "nearmiss-synth": nm_val,
        "squad-val": sq_val,
        "scifact-val": sf_val,
    }
    tmp = work / "groups.json.tmp"
    tmp.write_text(json.dumps({k: [asdict(g) for g in v] for k, v in groups.items()}), encoding="utf-8")
    tmp.replace(work / "groups.json")
    np.save(work / "idf.npy", wordpiece_idf(idf_corpus(root)))
    encode_all(_texts(groups), work / "states")
    return {k: len(v) for k, v in groups.items()}


def _texts(groups: dict[str, list[Group]]) -> list[tuple[str, int]]:
    out = []
    for gs in groups.values():
        for g in gs:
            out.append((g.query, Q_TOKENS))
            out.extend((p, P_TOKENS) for p in g.passages)
    return out


def torch_idf(work: Path) -> torch.Tensor:
    """The word-piece idf table `prepare` wrote."""
    return torch.from_numpy(np.load(work / "idf.npy"))


def load_groups(work: Path) -> dict[str, list[Group]]:
    """The training and validation groups `prepare` wrote, by set name."""
    raw = json.loads((work / "groups.json").read_text(encoding="utf-8"))
    return {k: [Group(**g) for g in v] for k, v in raw.items()}


def load(work: Path) -> tuple[dict[str, list[Group]], StateCache, torch.Tensor]:
    """The groups, the state cache over their texts and the idf table."""
    groups = load_groups(work)
    cache = encode_all(_texts(groups), work / "states")
    return groups, cache, torch_idf(work)


def teacher_cache(work: Path, model_dir: Path | None = None) -> StateCache:
    """Token states of every training text (the ``train`` and ``train_qswap`` groups) from a teacher encoder
    directory, cached in ``work/teacher`` (resumable, as the judge's own cache); the teacher must split text
    into the same word pieces as the base (all-mpnet-base-v2 does), so its tokens align one to one.
    `model_dir` is needed only while some text is not cached yet."""
    groups = load_groups(work)
    texts = _texts({k: groups[k] for k in ("train", "train_qswap")})

    def encoder() -> TextEncoder:
        if model_dir is None:
            raise ValueError(f"the teacher cache in {work / 'teacher'} is incomplete: pass the teacher's directory")
        return TextEncoder.from_dir(model_dir)

    return encode_all(texts, work / "teacher", batch=32, encoder=encoder)


def _pad(rows: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n = max(len(r[0]) for r in rows)
    h = rows[0][1].shape[1]
    ids = torch.zeros(len(rows), n, dtype=torch.int64)
    x = torch.zeros(len(rows), n, h, dtype=torch.float32)
    am = torch.zeros(len(rows), n, dtype=torch.float32)
    for r, (i, s) in enumerate(rows):
        ids[r, :len(i)] = torch.from_numpy(i.astype(np.int64))
        x[r, :len(i)] = torch.from_numpy(s.astype(np.float32))
        am[r, :len(i)] = 1.0
    return x, ids, match_mask(ids, am), mean_pool(x, am)


def pair_args(cache: StateCache, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, ...]:
    """The head's arguments for (query, passage) pairs, from the state cache."""
    q = _pad([cache.get(a, Q_TOKENS) for a, _ in pairs])
    p = _pad([cache.get(b, P_TOKENS) for _, b in pairs])
    return (*q, *p)


def teacher_targets(teacher: StateCache, cache: StateCache, pairs: list[tuple[str, str]],
                    args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's per-query-token MaxSim of each pair, shaped as the student's (B, Lq), and where it
    counts: the student's matching query pieces of pairs whose texts split into the same number of pieces
    in both caches (so positions align; other pairs count nowhere)."""
    q_mask, p_mask = args[2], args[6]
    dim = teacher.states[0].shape[1]
    tq = torch.zeros(*q_mask.shape, dim)
    tp = torch.zeros(*p_mask.shape, dim)
    same = torch.zeros(len(pairs))
    for r, (a, b) in enumerate(pairs):
        (qi, qs), (pi, ps) = teacher.get(a, Q_TOKENS), teacher.get(b, P_TOKENS)
        if len(qi) == len(cache.get(a, Q_TOKENS)[0]) and len(pi) == len(cache.get(b, P_TOKENS)[0]):
            tq[r, :len(qi)] = torch.from_numpy(qs.astype(np.float32))
            tp[r, :len(pi)] = torch.from_numpy(ps.astype(np.float32))
            same[r] = 1.0
    with torch.no_grad():
        target = token_maxsim(tq, tp, p_mask)
    return target, q_mask * same[:, None]


def teacher_table(work: Path, cache: StateCache, batch: int = 256) -> dict[tuple[str, str], np.ndarray]:
    """The teacher's per-query-token MaxSim (:func:`teacher_targets`) of every training pair, computed once
    from the complete :func:`teacher_cache` and kept in ``work/teacher/maxsim.pt``: per (query, passage), a
    float16 row over the student's query pieces, NaN where it does not count."""
    path = work / "teacher" / "maxsim.pt"
    if path.is_file():
        table: dict[tuple[str, str], np.ndarray] = torch.load(path, weights_only=False)
        return table
    groups = load_groups(work)
    teacher = teacher_cache(work)
    pairs = list(dict.fromkeys([(g.query, p) for g in groups["train"] for p in g.passages]
                               + [(g.query, g.passages[0]) for g in groups["train_qswap"]]))
    table = {}
    for s in tqdm(range(0, len(pairs), batch), desc="teacher MaxSim", unit="batch", mininterval=10):
        part = pairs[s:s + batch]
        target, where = teacher_targets(teacher, cache, part, pair_args(cache, part))
        rows = torch.where(where > 0, target, torch.full_like(target, float("nan"))).numpy().astype(np.float16)
        for r, pair in enumerate(part):
            table[pair] = rows[r, :len(cache.get(pair[0], Q_TOKENS)[0])]
    tmp = path.with_suffix(".tmp")
    torch.save(table, tmp)
    tmp.replace(path)
    return table


def table_targets(table: dict[tuple[str, str], np.ndarray], pairs: list[tuple[str, str]],
                  q_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, where) of :func:`teacher_targets` for `pairs`, read from a :func:`teacher_table`."""
    target = torch.zeros_like(q_mask)
    where = torch.zeros_like(q_mask)
    for r, pair in enumerate(pairs):
        row = torch.from_numpy(table[pair].astype(np.float32))
        ok = ~torch.isnan(row)
        target[r, :len(row)] = torch.where(ok, row, torch.zeros_like(row))
        where[r, :len(row)] = ok.to(torch.float32)
    return target, where * q_mask


def maxsim_gap(student: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """The distillation loss: the mean squared gap between the student's and the teacher's per-token MaxSim
    over the positions `where` counts (0 when none counts)."""
    return (((student - target) ** 2) * where).sum() / where.sum().clamp(min=1.0)


def score_groups(head: JudgeHead, cache: StateCache, groups: list[Group], batch: int = 256) -> list[np.ndarray]:
    """Logits per group."""
    pairs = [(g.query, p) for g in groups for p in g.passages]
    out = []
    head.eval()
    with torch.no_grad():
        for s in range(0, len(pairs), batch):
            out.append(head(*pair_args(cache, pairs[s:s + batch])).numpy())
    flat = np.concatenate(out) if out else np.zeros(0)
    res, o = [], 0
    for g in groups:
        res.append(flat[o:o + len(g.passages)])
        o += len(g.passages)
    return res


def mrr10(groups: list[Group], scores: list[np.ndarray]) -> float:
    """Mean MRR@10 (:func:`funnelrank.eval.metrics.mrr_at_k`) of the groups ranked by `scores`."""
    from funnelrank.eval.metrics import mrr_at_k

    return float(np.mean([mrr_at_k([str(i) for i in np.argsort(-s, kind="stable")],
                                   {str(i): lab for i, lab in enumerate(g.labels)}, 10)
                          for g, s in zip(groups, scores)])) if groups else 0.0


def nearmiss_figures(scores: list[np.ndarray], floor: float) -> dict[str, float]:
    """answer_first and gated (answer >= floor > every near-miss) on sigmoid scores; scores[0] is the answer."""
    first = np.mean([float(s[0] > s[1:].max()) for s in scores])
    prob = [1 / (1 + np.exp(-s)) for s in scores]
    gated = np.mean([float(gates(p, floor)) for p in prob])
    return {"answer_first": float(first), "gated": float(gated)}


def best_gate(scores: list[np.ndarray]) -> tuple[float, float]:
    """The floor (on sigmoid scores) that gates the most cases, and that share."""
    cands = sorted({float(1 / (1 + np.exp(-v))) for s in scores for v in s})
    best = (0.0, 0.5)
    for f in cands:
        g = nearmiss_figures(scores, f)["gated"]
        if g > best[0]:
            best = (g, f)
    return best[1], best[0]


def kept_share(groups: list[Group], scores: list[np.ndarray], floor: float) -> float:
    """Share of answerable groups whose best-scored passage clears the floor."""
    return float(np.mean(clears_floor([1 / (1 + np.exp(-s.max())) for s in scores], floor)))


def validate(head: JudgeHead, groups: dict[str, list[Group]], cache: StateCache, floor: float = 0.5) -> dict[str, Any]:
    """Validation figures: MRR@10 on the retrieval sets; answer-first and gated on the near-miss sets."""
    out: dict[str, Any] = {}
    for name in ("msmarco-validation", "squad-val", "scifact-val"):
        if groups.get(name):
            sc = score_groups(head, cache, groups[name])
            out[name] = {"mrr10": round(mrr10(groups[name], sc), 4), "kept": round(kept_share(groups[name], sc, floor), 3)}
    for name in ("nearmiss-val", "nearmiss-synth", "nearmiss-dev"):
        if groups.get(name):
            sc = score_groups(head, cache, groups[name])
            fig = nearmiss_figures(sc, floor)
            bf, bg = best_gate(sc)
            out[name] = {**{k: round(v, 3) for k, v in fig.items()}, "best_floor": round(bf, 3), "best_gated": round(bg, 3)}
    return out


def train(work: Path, out: Path, steps: int = 1500, groups_per_step: int = 32, lr: float = 3e-3,
          bce_weight: float = 0.5, qswap_weight: float = 1.0, max_negatives: int = 7, seed: int = 0,
          drop: tuple[str, ...] = (), rank: int = 0, balanced: bool = True, save_every: int = 250,
          distil: float = 0.0, log: bool = True) -> JudgeHead:
    """Train the head: listwise cross-entropy per group (positive vs its negatives) + pointwise BCE (so the
    sigmoid is an absolute score) + BCE on query-side swaps (a passage no longer answers a query with one
    word swapped). With `distil` > 0 (and `rank` > 0, the learned late-interaction space), add `distil` x the
    mean squared gap between the student's per-token MaxSim and the teacher's (:func:`teacher_table`, from
    a complete :func:`teacher_cache`) on every pair of the step. Resumes from `out` when it exists."""
    if distil and not rank:
        raise ValueError("distillation trains the late-interaction space: give rank > 0")
    groups, cache, idf = load(work)
    table = teacher_table(work, cache) if distil else None
    torch.manual_seed(seed)
    rng = random.Random(seed)
    head = JudgeHead(idf, drop=drop, rank=rank)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    step = 0
    if out.is_file():
        state = torch.load(out, weights_only=False)
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        rng.setstate(state["rng"])
    train_groups = [g for g in groups["train"] if 1 in g.labels]
    qswap = groups["train_qswap"]
    t0 = time.time()
    while step < steps:
        head.train()
        batch = rng.sample(train_groups, groups_per_step)
        pairs: list[tuple[str, str]] = []
        labels: list[int] = []
        spans: list[tuple[int, int]] = []
        for g in batch:
            pos = [i for i, lab in enumerate(g.labels) if lab]
            neg = [i for i, lab in enumerate(g.labels) if not lab]
            pick = [rng.choice(pos)] + rng.sample(neg, min(max_negatives, len(neg)))
            spans.append((len(pairs), len(pick)))
            pairs += [(g.query, g.passages[i]) for i in pick]
            labels += [g.labels[i] for i in pick]
        n_main = len(pairs)
        qs = rng.sample(qswap, min(len(qswap), groups_per_step))
        pairs += [(g.query, g.passages[0]) for g in qs]
        labels += [0] * len(qs)
        args = pair_args(cache, pairs)
        student = head.maxsim(args[0], args[4], args[6]) if table is not None else None
        logits = head(*args, maxsim=student)  # the head's MaxSim channel, computed once for both losses
        y = torch.tensor(labels, dtype=torch.float32)
        ce = torch.stack([F.cross_entropy(logits[s:s + n][None], torch.zeros(1, dtype=torch.long))
                          for s, n in spans]).mean()
        yb = y[:n_main]
        w = None
        if balanced:  # each class half the weight, so answers are not pushed under the floor by their count
            w = torch.where(yb > 0, 0.5 / yb.mean().clamp(min=1e-6), 0.5 / (1 - yb).mean().clamp(min=1e-6))
        bce = F.binary_cross_entropy_with_logits(logits[:n_main], yb, weight=w)
        loss = ce + bce_weight * bce
        if len(qs):
            loss = loss + qswap_weight * F.binary_cross_entropy_with_logits(logits[n_main:], y[n_main:])
        gap = torch.zeros(())
        if student is not None and table is not None:
            gap = maxsim_gap(student, *table_targets(table, pairs, args[2]))
            loss = loss + distil * gap
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        for pg in opt.param_groups:
            pg["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
        opt.step()
        step += 1
        if log and step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} ce {ce.item():.4f} bce {bce.item():.4f} "
                  f"distil {gap.item():.4f} {(time.time() - t0) / 50:.2f}s/step", flush=True)
            t0 = time.time()
        if step % save_every == 0 or step == steps:
            tmp = out.with_suffix(".tmp")
            torch.save({"head": head.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng.getstate(),
                        "drop": list(drop), "rank": rank, "distil": distil}, tmp)
            tmp.replace(out)
    return head


def load_head(ckpt: Path, idf: torch.Tensor) -> JudgeHead:
    state = torch.load(ckpt, weights_only=False)
    head = JudgeHead(idf, drop=tuple(state.get("drop", ())), rank=int(state.get("rank", 0)))
    head.load_state_dict(state["head"])
    return head.eval()


def platt(head: JudgeHead, groups: list[Group], cache: StateCache) -> tuple[float, float]:
    """Fit ``sigmoid(a * logit + b)`` to the labels of `groups` (validation groups) by cross-entropy, each class
    half the weight, and fold it into the head's last layer (so the exported logit is calibrated). Returns (a, b)."""
    scores = score_groups(head, cache, groups)
    x = torch.tensor(np.concatenate(scores), dtype=torch.float64)
    y = torch.tensor([lab for g in groups for lab in g.labels], dtype=torch.float64)
    w = torch.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y).mean())
    ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(ab[0] * x + ab[1], y, weight=w)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = (float(v) for v in ab.detach())
    with torch.no_grad():
        head.out.weight.mul_(a)
        head.out.bias.mul_(a).add_(b)
    return a, b


def calibrate_checkpoint(work: Path, ckpt: Path, out: Path, sets: tuple[str, ...] = ("msmarco-validation",
                                                                                   "nearmiss-synth")) -> dict[str, Any]:
    """Fit the calibrated sigmoid (:func:`platt`) on validation `sets` and write the head as `out`, atomically.
    Returns (a, b) and the validation figures after calibration."""
    groups, cache, idf = load(work)
    head = load_head(ckpt, idf)
    a, b = platt(head, [g for s in sets for g in groups[s]], cache)
    state = torch.load(ckpt, weights_only=False)
    state["head"] = head.state_dict()
    state["platt"] = {"a": a, "b": b, "sets": list(sets)}
    tmp = out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(out)
    return {"a": a, "b": b, "figures": validate(head, groups, cache)}
