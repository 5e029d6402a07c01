"""The stage registry and the evaluation harness behind `funnelrank eval`.

A *stage* is a function registered with :func:`register_stage` that takes a :class:`StageContext` (the
loaded dataset, the options, the stages already computed in this run) and returns a :class:`StageOutput`:
per-query rankings ``{qid: [(doc_id, score), ...]}`` (best first) plus its timings. The harness scores the
rankings (nDCG@10, Recall@100, MRR@10 by default) and reports throughput.

Each stage lives in its own module, and every stage module is listed once, in :data:`STAGE_MODULES`.
Stages search the run's one collection through :class:`funnelrank.Pipeline`: :meth:`StageContext.retriever`
gives the retriever (bm25, dense, hybrid over :meth:`StageContext.collection`, or the dataset's run; rerank
takes the one ``--rerank-from`` names), and :meth:`StageContext.stage` gives another stage's output, each
stage computed at most once per run and reused.

Timing conventions (reported per stage):

* ``query_seconds``: wall seconds of the query phase only; index/corpus build is excluded and reported as
  ``index_seconds``. ``qps`` = queries / ``query_seconds`` (None when the stage does not query, e.g. a
  precomputed run). Stages say how they measured in extra keys (the BM25 stage: ``"qps_threads": 1``).
* ``latency_ms_p50`` / ``latency_ms_p99``: per-query latency percentiles when the stage timed each query.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funnelrank.eval.beir import BeirDataset, Query
from funnelrank.eval.metrics import DEFAULT_METRICS, EvalResult, evaluate
from funnelrank.eval.significance import bootstrap_ci, compare_per_query
from funnelrank.rerank.policy import DEFAULT_DEPTH

__all__ = [
    "RERANK_SOURCES",
    "STAGE_MODULES",
    "Rankings",
    "StageContext",
    "StageOutput",
    "StageSpec",
    "add_harness_options",
    "default_options",
    "get_stage",
    "build_collection",
    "known_stages",
    "load_embedder",
    "pipeline_output",
    "parse_comparison",
    "register_stage",
    "run_evaluation",
    "time_queries",
]

Rankings = dict[str, list[tuple[str, float]]]
"""query id -> [(document id, score), ...], best first."""

STAGE_MODULES: tuple[str, ...] = (
    "funnelrank.eval.stages_run",
    "funnelrank.eval.stages_bm25",
    "funnelrank.eval.stages_dense",
    "funnelrank.eval.stages_rerank",
    "funnelrank.eval.stages_postgres",
)
"""Every module defining stages; importing one registers its stages. Add new stage modules here."""

RERANK_SOURCES: tuple[str, ...] = ("bm25", "dense", "hybrid", "run")
"""Candidate sources a reranking stage can take (``--rerank-from``)."""



@dataclass
class StageOutput:
    """What a stage returns: its rankings and how long it took.

    ``query_seconds`` is the wall time of the query phase alone (None if the stage ran no queries, e.g. a
    precomputed run); ``num_queries`` defaults to ``len(rankings)``; ``extra`` holds additional JSON keys
    for the report (e.g. ``{"qps_threads": 1}``).
    """

    rankings: Rankings
    query_seconds: float | None
    index_seconds: float | None = None
    latencies_ms: list[float] | None = None
    num_queries: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


StageFunc = Callable[["StageContext"], StageOutput]
OptionAdder = Callable[[argparse._ArgumentGroup], None]


@dataclass(frozen=True)
class StageSpec:
    """A registered stage: its name, function, one-line help and CLI options."""

    name: str
    func: StageFunc
    help: str = ""
    add_options: OptionAdder | None = None


_REGISTRY: dict[str, StageSpec] = {}


def register_stage(
    name: str, *, help: str = "", add_options: OptionAdder | None = None
) -> Callable[[StageFunc], StageFunc]:
    """Decorator registering `func` as the stage `name`.

    `add_options(group)` may add the stage's command-line options (argparse arguments) to its own group
    of `funnelrank eval`; their defaults are the stage's defaults for programmatic use too (see
    :func:`default_options`). Registering the same name twice is an error.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"invalid stage name {name!r}")

    def decorate(func: StageFunc) -> StageFunc:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.func.__qualname__ != func.__qualname__:
            raise ValueError(f'stage "{name}" is already registered by {existing.func.__module__}')
        _REGISTRY[name] = StageSpec(name=name, func=func, help=help, add_options=add_options)
        return func

    return decorate


def _load_stage_modules() -> None:
    for module in STAGE_MODULES:
        importlib.import_module(module)


def known_stages() -> list[str]:
    """Names of all registered stages (after importing every module in :data:`STAGE_MODULES`)."""
    _load_stage_modules()
    return list(_REGISTRY)


def get_stage(name: str) -> StageSpec:
    """The registered stage `name`; ValueError listing the known stages if there is none."""
    _load_stage_modules()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f'unknown stage "{name}"; known stages: {", ".join(_REGISTRY)}')
    return spec


def add_harness_options(parser: argparse.ArgumentParser) -> None:
    """Add the harness's own options and every stage's options (one group per stage) to `parser`."""
    parser.add_argument(
        "--depth",
        type=int,
        default=DEFAULT_DEPTH,
        help=f"results retrieved per query by each stage (default {DEFAULT_DEPTH}; Recall@100 needs 100)",
    )
    parser.add_argument(
        "--rerank-from",
        choices=RERANK_SOURCES,
        default=None,
        help="candidate source for reranking: default 'run' when DATA_DIR has run.bm25.tsv, else 'bm25'",
    )
    _load_stage_modules()
    for spec in _REGISTRY.values():
        if spec.add_options is not None:
            spec.add_options(parser.add_argument_group(f"{spec.name} stage"))


def default_options() -> dict[str, Any]:
    """Every harness and stage option with its default value (the single source of defaults)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_harness_options(parser)
    return vars(parser.parse_args([]))


class StageContext:
    """What a stage sees: the dataset, the options, and the other stages of the same run (computed once)."""

    def __init__(self, dataset: BeirDataset, options: Mapping[str, Any] | None = None, *, progress: bool = True,
                 stages: Sequence[str] = ()):
        opts = default_options()
        for key, value in (options or {}).items():
            if key not in opts:
                raise ValueError(f'unknown option "{key}"; known options: {", ".join(sorted(opts))}')
            opts[key] = value
        depth = opts["depth"]
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        self.dataset = dataset
        self.options: dict[str, Any] = opts
        self.progress = progress
        self._outputs: dict[str, StageOutput] = {}
        self._running: list[str] = []
        self._planned = list(stages)
        self._collection: Any | None = None
        self.collection_info: dict[str, Any] = {}
        """What building :meth:`collection` took: ``index_seconds``, and with dense ``embed_seconds``,
        ``embed_cached``, ``model``, ``hnsw``."""

    @property
    def depth(self) -> int:
        """Results to retrieve per query."""
        return int(self.options["depth"])

    def option(self, name: str) -> Any:
        """The value of option `name` (dashes as underscores, e.g. "rerank_from")."""
        try:
            return self.options[name]
        except KeyError:
            raise KeyError(f'no option "{name}"; known options: {", ".join(sorted(self.options))}') from None

    def log(self, message: str) -> None:
        """Progress message to stderr (never stdout, which carries the --json object)."""
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    def stage(self, name: str) -> StageOutput:
        """The output of stage `name` in this run, computing it now if no stage asked for it before."""
        if name in self._outputs:
            return self._outputs[name]
        if name in self._running:
            raise ValueError(f"stage dependency cycle: {' -> '.join([*self._running, name])}")
        spec = get_stage(name)
        self._running.append(name)
        try:
            self.log(f"[{name}] running on {self.dataset.name}/{self.dataset.split}")
            output = spec.func(self)
        finally:
            self._running.pop()
        self._outputs[name] = output
        return output

    def rerank_source(self) -> str:
        """The candidate source for reranking: ``--rerank-from`` if given, else "run" when the dataset has
        a run file, else "bm25"."""
        source = self.options.get("rerank_from")
        if source is None:
            return "run" if self.dataset.run is not None else "bm25"
        if source not in RERANK_SOURCES:
            raise ValueError(f'unknown rerank source "{source}"; choose one of {", ".join(RERANK_SOURCES)}')
        if source == "run" and self.dataset.run is None:
            raise ValueError(f"--rerank-from run needs a run file (run.bm25.tsv) in {self.dataset.root}")
        return str(source)

    def collection(self, dense: bool = False) -> Any:
        """The dataset's corpus as one :class:`~funnelrank.store.collection.Collection`, built once per run (see
        :func:`build_collection`) and shared by every stage. It is dense when `dense` is asked for or any
        planned stage (the run's stages, and rerank's candidate source) needs it; a BM25-only one built
        before a dense stage was asked for is replaced by a dense one."""
        wanted = dense or self._plans_dense()
        if self._collection is None or (wanted and not self._collection.dense):
            self._collection, self.collection_info = build_collection(self, wanted)
        return self._collection

    def _plans_dense(self) -> bool:
        names = set(self._planned)
        if "rerank" in names:
            names.add(self.rerank_source())
        return bool(names & DENSE_STAGES)

    def retriever(self, name: str) -> Any:
        """The stage-1 retriever `name`: ``"bm25"``, ``"dense"``, ``"hybrid"`` over :meth:`collection`
        (hybrid with ``--hybrid-fusion``, ``--rrf-k``, ``--hybrid-weights``), or ``"run"``, the dataset's
        run file (:class:`~funnelrank.retrieve.retrievers.RunRetriever`)."""
        from funnelrank.retrieve.retrievers import RunRetriever, make_retriever

        if name == "run":
            if self.dataset.run is None:
                raise ValueError(f"the run retriever needs a run file (run.bm25.tsv) in {self.dataset.root}")
            corpus = self.dataset.corpus

            def text(doc_id: str) -> str | None:
                doc = corpus.get(doc_id)
                return None if doc is None else doc.full_text

            return RunRetriever(self.dataset.run, text)
        if name not in ("bm25", "dense", "hybrid"):
            raise ValueError(f'no retriever "{name}"; choose one of {", ".join(RERANK_SOURCES)}')
        return make_retriever(
            self.collection(dense=name in DENSE_STAGES), name, hybrid_method=str(self.option("hybrid_fusion")),
            rrf_k=float(self.option("rrf_k")), hybrid_weights=hybrid_weights(self.option("hybrid_weights")),
        )


DENSE_STAGES: frozenset[str] = frozenset({"dense", "hybrid"})
"""Stages whose retriever needs the collection's dense (HNSW) index."""


def build_collection(ctx: StageContext, dense: bool) -> tuple[Any, dict[str, Any]]:
    """The dataset's corpus as a :class:`~funnelrank.store.collection.Collection` (``title + " " + text``, BM25
    with ``--k1``/``--b``; with `dense`, the bi-encoder's vectors, cached on disk unless
    ``--no-embedding-cache``, in an HNSW graph with ``--hnsw-*``), and what building it took."""
    from funnelrank.store.collection import Collection

    ids, texts = ctx.dataset.doc_ids(), ctx.dataset.doc_texts()
    info: dict[str, Any] = {}
    vectors = None
    embedder = None
    hnsw: dict[str, Any] = {}
    if dense:
        from funnelrank.embed import embed_corpus

        embedder = load_embedder(ctx)
        start = time.perf_counter()
        vectors, cached = embed_corpus(embedder, ids, texts, label=ctx.dataset.name,
                                       use_cache=not ctx.option("no_embedding_cache"), show_progress=ctx.progress)
        info["embed_seconds"] = time.perf_counter() - start
        info["embed_cached"] = cached
        info["model"] = embedder.name
        ctx.log(f"[collection] {len(ids)} documents embedded by {embedder.name} in {info['embed_seconds']:.1f}s"
                f"{' (cached)' if cached else ''}")
        ef = ctx.option("hnsw_ef")
        hnsw = {"M": int(ctx.option("hnsw_m")), "ef_construction": int(ctx.option("hnsw_ef_construction")),
                "ef_search": max(128, ctx.depth) if ef is None else int(ef)}
    collection = Collection(dense=dense, embedder=embedder, bm25={"k1": float(ctx.option("k1")),
                                                                   "b": float(ctx.option("b"))}, hnsw=hnsw)
    start = time.perf_counter()
    collection.add(ids, texts, vectors=vectors, show_progress=ctx.progress)
    info["index_seconds"] = time.perf_counter() - start
    if dense:
        info["hnsw"] = dict(hnsw)
    return collection, info


def load_embedder(ctx: StageContext) -> Any:
    """The bi-encoder the dense retriever uses under `ctx`'s options (``--dense-model``,
    ``--dense-precision``, ``--embed-threads``)."""
    from funnelrank.embed import Embedder

    threads = int(ctx.option("embed_threads"))
    model = ctx.option("dense_model")
    if model:
        if ctx.option("dense_precision"):
            raise ValueError("--dense-precision applies to the default model only, not to --dense-model")
        return Embedder(model, threads=threads)
    return Embedder.default(ctx.option("dense_precision"), threads=threads)


def time_queries(
    ctx: StageContext, search: Callable[[Query], tuple[Sequence[str], Sequence[float]]], desc: str
) -> tuple[Rankings, float, list[float]]:
    """Run `search(query) -> (doc_ids, scores)` over the dataset's queries, one at a time on this
    thread. Returns (rankings, wall seconds of the whole loop, per-query latencies in ms)."""
    from tqdm import tqdm

    rankings: Rankings = {}
    latencies: list[float] = []
    items = list(ctx.dataset.queries.values())
    start = time.perf_counter()
    for query in tqdm(items, desc=desc, unit="q", disable=not ctx.progress, file=sys.stderr, leave=False):
        t0 = time.perf_counter()
        ids, scores = search(query)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        rankings[query.id] = [(str(d), float(s)) for d, s in zip(ids, scores)]
    return rankings, time.perf_counter() - start, latencies


def pipeline_output(ctx: StageContext, pipe: Any, desc: str, extra: dict[str, Any] | None = None,
                    index_seconds: float | None = None) -> StageOutput:
    """Run every query through :meth:`funnelrank.Pipeline.search` (the product's path, one query at a time)
    and return the stage's output: each query's results in order, scored by their fused score when rerank
    fusion ordered them, else their score."""

    def search(query: Query) -> tuple[list[str], list[float]]:
        results = pipe.search(query.text, query_id=query.id).results
        return [r.id for r in results], [r.score if r.fused_score is None else r.fused_score for r in results]

    rankings, query_seconds, latencies = time_queries(ctx, search, desc)
    return StageOutput(rankings=rankings, query_seconds=query_seconds, index_seconds=index_seconds,
                       latencies_ms=latencies, extra={"qps_threads": 1, **(extra or {})})


def _stage_report(output: StageOutput, result: EvalResult) -> dict[str, Any]:
    report: dict[str, Any] = {name: round(value, 6) for name, value in result.mean.items()}
    n = output.num_queries if output.num_queries is not None else len(output.rankings)
    qs = output.query_seconds
    report["qps"] = round(n / qs, 3) if qs is not None and qs > 0 else None
    report["queries"] = n
    report["query_seconds"] = round(qs, 4) if qs is not None else None
    report["index_seconds"] = round(output.index_seconds, 4) if output.index_seconds is not None else None
    if output.latencies_ms:
        lat = np.asarray(output.latencies_ms, dtype=np.float64)
        report["latency_ms_p50"] = round(float(np.percentile(lat, 50)), 4)
        report["latency_ms_p99"] = round(float(np.percentile(lat, 99)), 4)
    if result.num_queries:
        report["ci"] = {
            name: [round(v, 6) for v in bootstrap_ci(list(values.values()))] for name, values in result.per_query.items()
        }
    report.update(output.extra)
    return report


def hybrid_weights(text: str) -> list[float]:
    """ "1,2" -> [1.0, 2.0], the hybrid's bm25,dense weights; ValueError for anything else."""
    try:
        weights = [float(w) for w in str(text).split(",")]
    except ValueError:
        raise ValueError(f"--hybrid-weights must be two numbers bm25,dense, got {text!r}") from None
    if len(weights) != 2 or any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"--hybrid-weights must be two non-negative numbers bm25,dense, got {text!r}")
    return weights


def parse_comparison(text: str) -> tuple[str, str]:
    """ "A:B" -> (A, B), two stage names to compare (stage A against stage B); ValueError otherwise."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f'a comparison is two different stages as "A:B" (e.g. "rerank:hybrid"), got "{text}"')
    return parts[0], parts[1]


def _default_comparisons(ctx: StageContext, stages: Sequence[str]) -> list[tuple[str, str]]:
    """A reranking stage against its candidate source, when both are evaluated in this run."""
    pairs = []
    if "rerank" in stages:
        source = ctx.rerank_source()
        if source in stages:
            pairs.append(("rerank", source))
    return pairs


def run_evaluation(
    dataset: BeirDataset,
    stages: Sequence[str],
    options: Mapping[str, Any] | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    progress: bool = True,
    compare: Sequence[tuple[str, str]] | None = None,
    keep_per_query: bool = False,
    keep_rankings: bool = False,
) -> dict[str, Any]:
    """Run `stages` (in order, dependencies computed once and reused) on `dataset` and return the report:

    ``{"dataset", "split", "num_queries", "num_docs", "stages": {name: {"ndcg@10", "recall@100", "mrr@10",
    "qps", "ci", ...}}, "comparisons": [...]}``. Only the requested stages appear under "stages"; each one's
    "ci" holds every metric's 95% bootstrap interval over the judged queries
    (:func:`funnelrank.eval.significance.bootstrap_ci`).

    "comparisons" holds, for each pair (A, B) in `compare` and each metric, A against B on the same queries:
    the mean difference, its paired bootstrap interval, the paired randomization test's p-value and the
    per-query wins/losses/ties (:class:`funnelrank.eval.significance.PairedComparison`). Both stages
    of a pair must be in `stages`. ``compare=None`` (the default) compares the rerank stage with its
    candidate source when both are evaluated; ``[]`` compares nothing. `keep_per_query` adds
    ``"per_query": {stage: {metric: {query id: value}}}`` (every judged query); `keep_rankings` adds
    ``"rankings": {stage: {query id: [(doc id, score), ...]}}``, each stage's rankings as scored (what
    ``funnelrank eval --out-run`` writes). Unknown stages fail before any work.
    """
    if not stages:
        raise ValueError(f"no stages given; known stages: {', '.join(known_stages())}")
    for name in stages:
        get_stage(name)  # fail fast, listing the known stages
    for a, b in compare or ():
        for name in (a, b):
            if name not in stages:
                raise ValueError(f'cannot compare "{a}" with "{b}": stage "{name}" is not among the evaluated '
                                 f"stages ({', '.join(stages)})")
    ctx = StageContext(dataset, options, progress=progress, stages=stages)
    pairs = _default_comparisons(ctx, stages) if compare is None else list(dict.fromkeys(compare))
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "split": dataset.split,
        "num_queries": len(dataset.queries),
        "num_docs": len(dataset.corpus),
        "stages": {},
    }
    results: dict[str, EvalResult] = {}
    rankings: dict[str, Rankings] = {}
    for name in dict.fromkeys(stages):
        output = ctx.stage(name)
        rankings[name] = output.rankings
        results[name] = evaluate(output.rankings, dataset.qrels, metrics)
        report["stages"][name] = _stage_report(output, results[name])
    report["comparisons"] = [
        compare_per_query(a, results[a].per_query[metric], b, results[b].per_query[metric], metric).as_dict()
        for a, b in pairs
        for metric in metrics
        if results[a].num_queries
    ]
    if keep_per_query:
        report["per_query"] = {name: result.per_query for name, result in results.items()}
    if keep_rankings:
        report["rankings"] = rankings
    return report
