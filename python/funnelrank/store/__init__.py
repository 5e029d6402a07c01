"""Collections and their on-disk format: :class:`~funnelrank.store.collection.Collection` (documents, a BM25
index, optional dense vectors), saved atomically and loaded with checksums (:mod:`funnelrank.store.format`),
and the document sources a collection is built from (:mod:`funnelrank.store.sources`)."""
