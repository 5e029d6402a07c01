"""Collections and their on-disk format: :class:`~funnelrank.store.collection.Collection` (documents, a BM25
index, optional dense vectors), saved atomically (:mod:`funnelrank.store.save`) and loaded with checksums
(:mod:`funnelrank.store.load`) under one writer lock (:mod:`funnelrank.store.lock`), checked offline by
:mod:`funnelrank.store.check`, and the document sources a collection is built from
(:mod:`funnelrank.store.sources`)."""
