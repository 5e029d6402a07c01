"""Stage 1: retrievers that return :class:`~funnelrank.candidates.Candidate` lists cheaply at corpus scale.

* :mod:`funnelrank.retrieve.retrievers`: the :class:`~funnelrank.retrieve.retrievers.Retriever` protocol, and
  BM25, dense (HNSW), hybrid (RRF or convex fusion) and precomputed-run retrievers over a collection;
* :mod:`funnelrank.retrieve.filters`: the metadata filter language;
* :mod:`funnelrank.retrieve.sharded`: a collection split into shards, searched with global BM25 statistics;
* :mod:`funnelrank.retrieve.pg_corpus` and :mod:`funnelrank.retrieve.postgres`: PostgreSQL + pgvector.
"""
