"""Where the default cross-encoder comes from when no model is named.

In order: the directory in ``$FUNNELRANK_RERANKER``; else ``<cache>/models/funnelrank-reranker`` (see
:func:`funnelrank.files.cache_dir`), a user-installed override; else the project's own trained reranker,
shipped inside the package (:func:`funnelrank.models.default_reranker_path`, issue 5).
Either must hold what :meth:`CrossEncoder.from_pretrained` loads (model.onnx, tokenizer.json, config.json).
"""

from __future__ import annotations

import os
from pathlib import Path

from funnelrank.files import cache_dir

__all__ = ["OVERRIDE_RERANKER_DIR", "RERANKER_ENV", "available_cores", "default_parallelism", "default_reranker_dir"]

RERANKER_ENV = "FUNNELRANK_RERANKER"
OVERRIDE_RERANKER_DIR = "funnelrank-reranker"
"""Name of the user-installed override under funnelrank's cache (``<cache>/models/funnelrank-reranker``)."""

def default_reranker_dir() -> Path:
    """The one resolver of "the default reranker": ``$FUNNELRANK_RERANKER``, else the override in the cache,
    else the model shipped in the package (:func:`funnelrank.models.default_reranker_path`). What
    ``Reranker()``, ``Pipeline(reranker="default")``, the demo, the service and eval load. FileNotFoundError
    (saying what to do) when there is none."""
    env = os.environ.get(RERANKER_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"${RERANKER_ENV} points to {path}, which is not a directory")
        return path
    path = cache_dir("models", OVERRIDE_RERANKER_DIR)
    if path.is_dir():
        return path
    from funnelrank.models import default_reranker_path

    try:
        return default_reranker_path()
    except FileNotFoundError:
        pass
    raise FileNotFoundError(
        f"no default cross-encoder: looked for ${RERANKER_ENV} and {path}. Name a model directory (or Hub id), "
        f"or export one with `python -m funnelrank.models.export_cross_encoder SRC {path}`"
    )


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_parallelism(cores: int | None = None) -> tuple[int, int]:
    """``(workers, intra_op_threads)`` for a `RerankScheduler` over `cores` cores (default: those available).

    Two workers, each with its own ONNX Runtime session, split the cores between them: independent sessions
    need no per-operator thread synchronisation, which stalls when the OS deschedules one thread of a pool
    (the reranking guide's "Workers, threads, graph fusion" has the measurement). One core: one worker, one thread.
    """
    cores = available_cores() if cores is None else max(1, int(cores))
    workers = 2 if cores >= 2 else 1
    return workers, max(1, cores // workers)
