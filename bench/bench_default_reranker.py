"""Speed of the shipped default cross-encoder against the same architecture with random weights.

Both are the same graph (same compute), so the ratio should be ~1.0: this guards against a precision or
export choice that costs speed. Pairs: the first --queries trec-dl19 queries x their run.bm25.tsv top-100
(real passage lengths). Rounds alternate the two models; the best round of each is reported, plus the ratio.
Needs the dev extra (torch) to export the random-weights twin.

    python bench/bench_default_reranker.py --data ../shared/data/trec-dl19 [--queries 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from funnelrank.evaluation.beir import load_beir
from funnelrank.models import default_reranker_path
from funnelrank.rerank import CrossEncoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/trec-dl19"))
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    from funnelrank.training.export import export_model_dir, load_trained, randomize

    ds = load_beir(a.data, split="test")
    qids = [q for q in ds.queries if q in ds.run][: a.queries]
    work = [(ds.queries[q].text, [ds.corpus[d].full_text for d, _ in ds.run[q][:100] if d in ds.corpus]) for q in qids]
    shipped = default_reranker_path()
    precision = json.loads((shipped / "config.json").read_text())["funnelrank"]["precision"]
    with tempfile.TemporaryDirectory() as tmp:
        twin = export_model_dir(randomize(load_trained(None)), Path(tmp) / "random", precision=precision)
        models = {"shipped": CrossEncoder.from_pretrained(shipped, intra_op_threads=a.threads),
                  "random_weights": CrossEncoder.from_pretrained(twin, intra_op_threads=a.threads)}
        best = {k: 0.0 for k in models}
        n_pairs = sum(len(p) for _, p in work)
        for _ in range(a.rounds):
            for name, model in models.items():
                t0 = time.perf_counter()
                for q, passages in work:
                    model.predict(q, passages)
                best[name] = max(best[name], n_pairs / (time.perf_counter() - t0))
    print(json.dumps({"pairs": n_pairs, "precision": precision, "pairs_per_s": {k: round(v, 1) for k, v in best.items()},
                      "ratio_shipped_over_random": round(best["shipped"] / best["random_weights"], 3)}))


if __name__ == "__main__":
    main()
