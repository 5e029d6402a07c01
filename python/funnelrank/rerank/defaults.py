"""Where the default cross-encoder comes from when no model is named.

In order: the directory in ``$FUNNELRANK_RERANKER``; else ``<cache>/models/funnelrank-reranker`` (see
:func:`funnelrank.cache.cache_dir`), where the project's own trained reranker is installed (issue 5).
Either must hold what :meth:`CrossEncoder.from_pretrained` loads (model.onnx, tokenizer.json, config.json).
"""

from __future__ import annotations

import os
from pathlib import Path

from funnelrank.cache import cache_dir

__all__ = ["DEFAULT_RERANKER", "RERANKER_ENV", "default_reranker_dir"]

RERANKER_ENV = "FUNNELRANK_RERANKER"
DEFAULT_RERANKER = "funnelrank-reranker"


def default_reranker_dir() -> Path:
    """The default cross-encoder directory; FileNotFoundError (saying what to do) when there is none."""
    env = os.environ.get(RERANKER_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"${RERANKER_ENV} points to {path}, which is not a directory")
        return path
    path = cache_dir("models", DEFAULT_RERANKER)
    if path.is_dir():
        return path
    raise FileNotFoundError(
        f"no default cross-encoder: looked for ${RERANKER_ENV} and {path}. Name a model directory (or Hub id), "
        f"or export one with `python -m funnelrank.tools.export_cross_encoder SRC {path}`"
    )
