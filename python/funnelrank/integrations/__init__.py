"""funnelrank inside the RAG frameworks: each module wraps :class:`funnelrank.Reranker` (rerank with the
relevance floor) and :class:`funnelrank.Pipeline` (retrieve and rerank) in that framework's own component
types. Nothing here is imported with ``funnelrank``; each module imports its framework when it is imported,
and says which extra installs it when that fails:

* :mod:`funnelrank.integrations.langchain` (``pip install 'funnelrank[langchain]'``, langchain-core):
  ``FunnelRankCompressor`` (a ``BaseDocumentCompressor``) and ``FunnelRankRetriever`` (a ``BaseRetriever``).
* :mod:`funnelrank.integrations.llamaindex` (``pip install 'funnelrank[llamaindex]'``, llama-index-core):
  ``FunnelRankRerank`` (a ``BaseNodePostprocessor``) and ``FunnelRankRetriever`` (a ``BaseRetriever``).
* :mod:`funnelrank.integrations.haystack` (``pip install 'funnelrank[haystack]'``, haystack-ai):
  ``FunnelRankRanker`` and ``FunnelRankRetriever`` (``@component``\\ s).

The components only translate: a framework document becomes a :class:`funnelrank.Candidate` (id = its
position, so each kept ``RerankedItem.index`` points back at it), the reranker scores and keeps them, and the
kept ones go back as the framework's documents carrying the cross-encoder's sigmoid score (0..1). Documents
below the floor (0.46 for the default reranker) are dropped; when none clears it the result is empty.

    >>> from funnelrank.integrations.langchain import FunnelRankCompressor
    >>> from langchain_core.documents import Document
    >>> docs = [Document("Bananas are rich in potassium."), Document("Ibuprofen for children is dosed by body weight.")]
    >>> [(d.page_content, round(d.metadata["relevance_score"], 2))
    ...  for d in FunnelRankCompressor().compress_documents(docs, "ibuprofen dose for a child")]
    [('Ibuprofen for children is dosed by body weight.', 1.0)]
"""

__all__: list[str] = []
