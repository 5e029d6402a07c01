"""Test helpers for the service and pipeline: a deterministic toy pair model and a real uvicorn server
running in a background thread on a free loopback port."""

from __future__ import annotations

import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from funnelrank.rerank.cross_encoder import EncodedPairs

_WORD = re.compile(r"\w+")
_SEP = 1


def _ids(text: str) -> list[int]:
    return [2 + zlib.crc32(w.lower().encode()) % 100_000 for w in _WORD.findall(text)]


class OverlapModel:
    """A toy cross-encoder for the scheduler (`PairModel`): the logit of (query, passage) is
    ``8 * (fraction of query words in the passage) - 4``, so a passage holding every query word scores
    sigmoid(4) = 0.98 and one holding none sigmoid(-4) = 0.018. `delay_s` makes every batch slow
    (to fill the queue in overload tests); `token_delay_s` adds that much per token in the batch (model time
    that grows with tokens, as a real cross-encoder's does). A token is a word (or the separator)."""

    def __init__(self, delay_s: float = 0.0, token_delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.token_delay_s = token_delay_s
        self.batches = 0

    def encode(self, query: str, passages: Sequence[str]) -> EncodedPairs:
        q = _ids(query)
        pairs = [np.asarray([*q, _SEP, *_ids(p)], dtype=np.int64) for p in passages]
        return EncodedPairs(input_ids=pairs, type_ids=None, n_passages=len(passages))

    def infer(self, input_ids: Sequence[np.ndarray], type_ids: Sequence[np.ndarray] | None = None) -> np.ndarray:
        delay = self.delay_s + self.token_delay_s * sum(len(ids) for ids in input_ids)
        if delay:
            time.sleep(delay)
        self.batches += 1
        out = np.empty(len(input_ids))
        for i, ids in enumerate(input_ids):
            ids = list(ids)
            sep = ids.index(_SEP)
            q, p = set(ids[:sep]), set(ids[sep + 1 :])
            out[i] = 8.0 * (len(q & p) / len(q) if q else 0.0) - 4.0
        return out


def overlap_reranker(delay_s: float = 0.0, token_delay_s: float = 0.0, **scheduler_options: Any) -> Any:
    """A `Reranker` over :class:`OverlapModel` with its own scheduler (close ``reranker.scheduler`` after use)."""
    from funnelrank.rerank.reranker import Reranker
    from funnelrank.rerank.scheduler import RerankScheduler

    scheduler_options.setdefault("max_wait_ms", 1.0)
    scheduler = RerankScheduler(OverlapModel(delay_s, token_delay_s), **scheduler_options)
    return Reranker(scorer=scheduler)


def wait_until_pending(scheduler: Any, pairs: int, timeout_s: float = 5.0, stop: Any = None) -> None:
    """Block until `scheduler` holds at least `pairs` pending pairs (a request admitted and queued), polling
    every 5 ms; stops early once `stop()` is true. AssertionError if it never does within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while scheduler.pending_pairs < pairs and time.monotonic() < deadline and not (stop and stop()):
        time.sleep(0.005)
    assert scheduler.pending_pairs >= pairs, f"no request reached the scheduler ({scheduler.pending_pairs} pending)"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(app: Any, timeout_s: float = 20.0, limits: Any | None = None) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1:<free port> in a thread, with the settings `funnelrank serve` uses
    (:func:`funnelrank.serve.server.server_config`; `limits` for its header timeout); yields the base URL."""
    import uvicorn
    from funnelrank.serve.server import server_config

    port = free_port()
    config = server_config(app, host="127.0.0.1", port=port, limits=limits, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


TOY_DOCS = [
    "The capital of France is Paris.",
    "Bananas are yellow and rich in potassium.",
    "Paris hosts the Louvre, the most visited museum in France.",
    "Completely unrelated text about knitting.",
]
"""Documents the toy-server tests rerank (:class:`OverlapModel` scores them by shared words)."""


@contextmanager
def toy_server() -> Iterator[str]:
    """The service over :class:`OverlapModel` with small limits (8 documents of at most 200 characters, queries
    of at most 50, bodies of at most 4096 bytes), served by :func:`running_server`; yields the base URL."""
    from funnelrank.serve import ServiceLimits
    from funnelrank.serve.app import create_app

    reranker = overlap_reranker()
    app = create_app(reranker, model_name="overlap-toy", limits=ServiceLimits(max_documents=8, max_document_chars=200,
                                                                              max_query_chars=50, max_body_bytes=4096))
    try:
        with running_server(app) as url:
            yield url
    finally:
        reranker.scheduler.close()
