"""Speed of the shipped default cross-encoder against the same architecture with random weights.

Both are the same graph (same compute), so the ratio should be ~1.0: this guards against a precision or
export choice that costs speed. Pairs: the first --queries trec-dl19 queries x their run.bm25.tsv top-100
(real passage lengths). Rounds alternate the two models; the best round of each is reported, plus the ratio.
Needs the dev extra (torch) to export the random-weights twin.

With ``--precisions`` it instead compares the shipped model's precisions on the same pairs: the shipped
fp16-weight file (fp32 compute), the same weights as a plain fp32 file, and ONNX Runtime's dynamic int8
quantization of that fp32 file, all derived from the shipped model here (no torch). It prints pairs/s
(best of alternating rounds) and agreement with fp32: largest |score difference|, mean per-query Kendall
tau, and mean overlap of the per-query top 10.

    python bench/bench_default_reranker.py --data ../shared/data/trec-dl19 [--queries 5] [--rounds 3]
    python bench/bench_default_reranker.py --data ../shared/data/trec-dl19 --precisions
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from funnelrank.eval.beir import load_beir
from funnelrank.models import default_reranker_path
from funnelrank.rerank import CrossEncoder
from funnelrank.rerank.variants import fp32_weights


def time_models(models: dict[str, CrossEncoder], work: list[tuple[str, list[str]]], rounds: int) -> tuple[dict, dict]:
    """Best pairs/s of each model over alternating rounds, and each model's scores (one array per query)."""
    best = {k: 0.0 for k in models}
    scores: dict[str, list[np.ndarray]] = {}
    n_pairs = sum(len(p) for _, p in work)
    for _ in range(rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            scores[name] = [model.predict(q, passages)[0] for q, passages in work]
            best[name] = max(best[name], n_pairs / (time.perf_counter() - t0))
    return best, scores


def compare_precisions(shipped: Path, work: list[tuple[str, list[str]]], rounds: int, threads: int) -> dict:
    """See module doc (--precisions)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from scipy.stats import kendalltau

    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for name in ("fp32", "int8"):
            d = Path(tmp) / name
            shutil.copytree(shipped, d)
            dirs[name] = d
        fp32_weights(shipped / "model.onnx", dirs["fp32"] / "model.onnx")
        quantize_dynamic(str(dirs["fp32"] / "model.onnx"), str(dirs["int8"] / "model.onnx"), weight_type=QuantType.QInt8)
        models = {"fp16w (shipped)": CrossEncoder.from_pretrained(shipped, intra_op_threads=threads),
                  "fp32": CrossEncoder.from_pretrained(dirs["fp32"], intra_op_threads=threads),
                  "int8": CrossEncoder.from_pretrained(dirs["int8"], intra_op_threads=threads)}
        sizes = {"fp16w (shipped)": (shipped / "model.onnx").stat().st_size,
                 "fp32": (dirs["fp32"] / "model.onnx").stat().st_size, "int8": (dirs["int8"] / "model.onnx").stat().st_size}
        best, scores = time_models(models, work, rounds)
    ref = scores["fp32"]
    out = {}
    for name, s in scores.items():
        taus = [kendalltau(a, b)[0] for a, b in zip(s, ref)]
        top = [len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10 for a, b in zip(s, ref)]
        out[name] = {"pairs_per_s": round(best[name], 1), "mb": round(sizes[name] / 1e6, 1),
                     "max_abs_score_diff_vs_fp32": round(float(max(np.max(np.abs(a - b)) for a, b in zip(s, ref))), 4),
                     "kendall_tau_vs_fp32": round(float(np.mean(taus)), 3), "top10_overlap_vs_fp32": round(float(np.mean(top)), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/trec-dl19"))
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", action="store_true", help="compare fp16w / fp32 / int8 of the shipped model")
    a = ap.parse_args()
    ds = load_beir(a.data, split="test")
    qids = [q for q in ds.queries if q in ds.run][: a.queries]
    work = [(ds.queries[q].text, [ds.corpus[d].full_text for d, _ in ds.run[q][:100] if d in ds.corpus]) for q in qids]
    shipped = default_reranker_path()
    if a.precisions:
        res = compare_precisions(shipped, work, a.rounds, a.threads)
        for name, r in res.items():
            print(f"{name:16s} {r['pairs_per_s']:7.1f} pairs/s  {r['mb']:5.1f} MB  max|score-fp32| {r['max_abs_score_diff_vs_fp32']:.4f}  "
                  f"Kendall tau {r['kendall_tau_vs_fp32']:.3f}  top-10 overlap {r['top10_overlap_vs_fp32']:.3f}")
        print(json.dumps({"pairs": sum(len(p) for _, p in work), "threads": a.threads, "precisions": res}))
        return
    from funnelrank.train.export import export_model_dir, load_trained, randomize

    precision = json.loads((shipped / "config.json").read_text())["funnelrank"]["precision"]
    with tempfile.TemporaryDirectory() as tmp:
        twin = export_model_dir(randomize(load_trained(None)), Path(tmp) / "random", precision=precision)
        models = {"shipped": CrossEncoder.from_pretrained(shipped, intra_op_threads=a.threads),
                  "random_weights": CrossEncoder.from_pretrained(twin, intra_op_threads=a.threads)}
        best, _ = time_models(models, work, a.rounds)
        n_pairs = sum(len(p) for _, p in work)
    print(json.dumps({"pairs": n_pairs, "precision": precision, "pairs_per_s": {k: round(v, 1) for k, v in best.items()},
                      "ratio_shipped_over_random": round(best["shipped"] / best["random_weights"], 3)}))


if __name__ == "__main__":
    main()
