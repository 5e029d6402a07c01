"""Collections and their on-disk format: :class:`~funnelrank.store.collection.Collection` (documents, a BM25
index, optional dense vectors) as segments (:mod:`funnelrank.store.segments`), committed atomically and
incrementally (:mod:`funnelrank.store.save`) and loaded with checksums (:mod:`funnelrank.store.load`) under one
writer lock (:mod:`funnelrank.store.lock`), every write logged first (:mod:`funnelrank.store.wal`), checked
offline by :mod:`funnelrank.store.check`, and the document sources a collection is built from
(:mod:`funnelrank.store.sources`)."""
