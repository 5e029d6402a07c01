"""Passage states reused across queries, for segment cross-encoders (the default reranker's architecture).

A segment cross-encoder (``config.json`` ``"funnelrank": {"n_separate_layers": N}``) encodes the query and the
passage *separately* in its first N layers ("[CLS] text [SEP]" at positions 0.. each) and only its upper
layers attend across the pair. So a passage's lower-layer states do not depend on the query: computed once,
they serve every query that reranks that passage, and a pair then costs only the joint layers.

:func:`split_graphs` cuts the model's ONNX graph at the output of layer N (cached on disk, derived from the
model file itself; no torch):

* the *segment* graph: the usual inputs -> the states after layer N (run on one text at a time, as a query);
* the *joint* graph: those states plus the usual pair inputs -> the logit;
* the *whole* graph: the model with those states as a second output. A batch with a passage not stored yet
  runs it (the model's own cost) and keeps the new passages' states, so a first sight is never dearer than
  the model and a second one costs only the joint layers.

:class:`SplitScorer` runs them. Its :class:`StateStore` keeps passage states keyed by the passage's token ids
exactly as the pair holds them (after truncation), so a reused state is the state the whole graph would
compute: the logits equal the whole graph's to float rounding (states are stored as float16 by default, which
moves logits by about 1e-3; ``state_dtype=np.float32`` keeps them to 1e-5). ``precompute`` fills the store at
index time; with ``prefix=True`` a passage that a pair truncates reuses the precomputed states of its longest
form cut to the pair's length (an approximation: those states also read the tokens past the cut), which
:func:`funnelrank.eval.optimize.guard` measures before anyone relies on it.

    >>> scorer = SplitScorer.for_model(onnx_path, config)            # doctest: +SKIP
    >>> scorer.precompute(token_lists)                               # doctest: +SKIP
    >>> scorer.store.stats()                                         # doctest: +SKIP
    {'entries': 5183, 'bytes': 1020116992, 'hits': 0, 'misses': 0}
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.files import atomic_writer, cache_dir, file_sha256

__all__ = ["StateStore", "SplitScorer", "is_segment_model", "split_graphs"]

_PAIR_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PREFIX_TOKENS = 24  # tokens that index a precomputed passage for prefix lookups


def is_segment_model(config: dict[str, Any]) -> bool:
    """Whether `config` (a model's config.json) describes a segment cross-encoder with separate lower layers.

        >>> is_segment_model({"funnelrank": {"n_separate_layers": 4}, "num_hidden_layers": 6})
        True
    """
    n = (config.get("funnelrank") or {}).get("n_separate_layers")
    layers = config.get("num_hidden_layers")
    return isinstance(n, int) and isinstance(layers, int) and 0 < n <= layers


def split_graphs(onnx_path: str | Path, n_separate: int, num_layers: int) -> tuple[Path, Path, Path]:
    """The (segment, joint, whole) ONNX files cut from `onnx_path` at the output of layer `n_separate`, derived
    once and cached under the funnelrank cache (keyed by the model file's SHA-256). *whole* is the model itself
    with that cut as a second output, so a batch whose passages are new costs one run of the model and yields
    their states on the way. ValueError when the graph does not have the 1 + 2 * `num_layers`
    LayerNormalization nodes of a BERT encoder, in order."""
    onnx_path = Path(onnx_path)
    digest = file_sha256(onnx_path)[:16]
    out = cache_dir("split", f"{digest}-{n_separate}")
    segment, joint, whole = out / "segment.onnx", out / "joint.onnx", out / "whole.onnx"
    if segment.is_file() and joint.is_file() and whole.is_file():
        return segment, joint, whole
    import onnx
    from onnx.utils import Extractor

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    if len(norms) != 1 + 2 * num_layers:
        raise ValueError(f"{onnx_path}: expected {1 + 2 * num_layers} LayerNormalization nodes (embeddings + 2 per "
                         f"layer), found {len(norms)}; cannot find where layer {n_separate} ends")
    cut = norms[2 * n_separate].output[0]
    inputs = [i.name for i in model.graph.input if i.name in _PAIR_INPUTS]
    extractor = Extractor(model)
    logits = model.graph.output[0].name
    parts = {segment: extractor.extract_model(inputs, [cut]),
             joint: extractor.extract_model([cut, *inputs], [logits]),
             whole: extractor.extract_model(inputs, [logits, cut])}
    out.mkdir(parents=True, exist_ok=True)
    for path, part in parts.items():
        with atomic_writer(path) as f:
            f.write(part.SerializeToString())
    return segment, joint, whole


class StateStore:
    """Thread-safe store of passage states: an LRU of at most `max_bytes` for states met while scoring, and an
    unbounded table for states `precompute` put there on purpose (index time)."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._lru: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lru_bytes = 0
        self._pinned: dict[bytes, np.ndarray] = {}
        self._by_prefix: dict[bytes, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._pinned_bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.prefix_hits = 0
        self.misses = 0

    def _exact(self, key: bytes) -> np.ndarray | None:  # under the lock
        found = self._pinned.get(key)
        if found is None:
            found = self._lru.get(key)
            if found is not None:
                self._lru.move_to_end(key)
        return found

    def _count(self, found: np.ndarray | None) -> np.ndarray | None:  # under the lock
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def get(self, key: bytes) -> np.ndarray | None:
        """The states stored under `key` (a passage's token ids as bytes), or None."""
        with self._lock:
            return self._count(self._exact(key))

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._pinned or key in self._lru

    def lookup(self, body: np.ndarray, *, prefix: bool = False) -> np.ndarray | None:
        """The states of a passage as a pair holds it (`body`: its token ids and final [SEP]), or None. With
        `prefix`, a passage not stored as it is may be served by the precomputed states of a longer passage
        that starts with it: that one's [CLS] and first ``len(body) - 1`` token states, then its [SEP] state."""
        with self._lock:
            found = self._exact(body.tobytes())
            if found is None and prefix:
                tokens = body[:-1]
                for full, states in self._by_prefix.get(tokens[:_PREFIX_TOKENS].tobytes(), ()):
                    if full.shape[0] > tokens.shape[0] and np.array_equal(full[: tokens.shape[0]], tokens):
                        self.prefix_hits += 1
                        found = np.concatenate([states[: tokens.shape[0] + 1], states[-1:]])
                        break
            return self._count(found)

    def put(self, key: bytes, states: np.ndarray) -> None:
        """Keep `states` in the LRU (evicting the least recently used beyond `max_bytes`)."""
        if states.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._pinned or key in self._lru:
                return
            self._lru[key] = states
            self._lru_bytes += states.nbytes
            while self._lru_bytes > self.max_bytes:
                _, old = self._lru.popitem(last=False)
                self._lru_bytes -= old.nbytes

    def pin(self, key: bytes, tokens: np.ndarray, states: np.ndarray) -> None:
        """Keep `states` for good (precomputed at index time), findable exactly and by prefix."""
        with self._lock:
            if key in self._pinned:
                return
            self._pinned[key] = states
            self._pinned_bytes += states.nbytes
            self._by_prefix.setdefault(tokens[:_PREFIX_TOKENS].tobytes(), []).append((tokens, states))

    def stats(self) -> dict[str, int]:
        """Entries, bytes, and lookups so far.

            >>> StateStore().stats()
            {'entries': 0, 'bytes': 0, 'hits': 0, 'prefix_hits': 0, 'misses': 0}
        """
        with self._lock:
            return {"entries": len(self._lru) + len(self._pinned), "bytes": self._lru_bytes + self._pinned_bytes,
                    "hits": self.hits, "prefix_hits": self.prefix_hits, "misses": self.misses}


class SplitScorer:
    """Scores padded pair batches with the segment and joint graphs, reusing stored passage states (see the
    module doc). Built by :meth:`for_model`; used by :class:`funnelrank.rerank.CrossEncoder` when it is loaded
    with ``reuse_passage_states``."""

    def __init__(self, segment: Any, joint: Any, whole: Any, *, hidden_size: int, cls_id: int, store: StateStore,
                 state_dtype: Any = np.float16, prefix: bool = False) -> None:
        self.segment, self.joint, self.whole = segment, joint, whole
        self._whole_inputs = [i.name for i in whole.get_inputs()]
        names = [i.name for i in joint.get_inputs()]
        states_inputs = [n for n in names if n not in _PAIR_INPUTS]
        if len(states_inputs) != 1:
            raise ValueError(f"joint graph inputs {names}: expected the pair inputs and one states input")
        self._states_input = states_inputs[0]
        self._pair_inputs = [n for n in names if n in _PAIR_INPUTS]
        self._segment_inputs = [i.name for i in segment.get_inputs()]
        self.hidden_size = int(hidden_size)
        self.cls_id = int(cls_id)
        self.store = store
        self.state_dtype = np.dtype(state_dtype)
        self.prefix = bool(prefix)
        self._queries: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._queries_lock = threading.Lock()

    @classmethod
    def for_model(cls, onnx_path: str | Path, config: dict[str, Any], *, session_factory: Any,
                  store: StateStore | None = None, state_dtype: Any = np.float16, prefix: bool = False) -> SplitScorer:
        """A scorer for the segment model at `onnx_path` (`config`: its config.json); `session_factory(path)`
        opens an ONNX Runtime session with the caller's options."""
        if not is_segment_model(config):
            raise ValueError("reuse_passage_states needs a segment cross-encoder (config.json funnelrank."
                             "n_separate_layers at most num_hidden_layers); this model reads query and passage "
                             "jointly from its first layer, so its passage states depend on the query")
        n_sep = int(config["funnelrank"]["n_separate_layers"])
        seg_path, joint_path, whole_path = split_graphs(onnx_path, n_sep, int(config["num_hidden_layers"]))
        return cls(session_factory(seg_path), session_factory(joint_path), session_factory(whole_path),
                   hidden_size=int(config["hidden_size"]),
                   cls_id=int(config.get("cls_token_id", 101)), store=store or StateStore(), state_dtype=state_dtype,
                   prefix=prefix)

    # ------------------------------------------------------------------ segment states
    def _segments(self, token_lists: Sequence[np.ndarray], int_dtype: Any) -> list[np.ndarray]:
        """States after the separate layers of each "[CLS] ... [SEP]" token list (run as one batch)."""
        n, longest = len(token_lists), max(t.shape[0] for t in token_lists)
        ids = np.zeros((n, longest), dtype=int_dtype)
        mask = np.zeros((n, longest), dtype=int_dtype)
        for row, t in enumerate(token_lists):
            ids[row, : t.shape[0]] = t
            mask[row, : t.shape[0]] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        out = self.segment.run(None, {k: v for k, v in feed.items() if k in self._segment_inputs})[0]
        return [out[row, : t.shape[0]] for row, t in enumerate(token_lists)]

    def precompute(self, token_lists: Sequence[np.ndarray], *, int_dtype: Any = np.int64, batch_pairs: int = 32,
                   show_progress: bool = False) -> int:
        """Compute and pin the states of passages given as "[CLS] tokens [SEP]" id arrays (index time).
        Returns how many were new."""
        order = sorted(range(len(token_lists)), key=lambda i: token_lists[i].shape[0])
        new = 0
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(order), desc="passage states", unit="passage")
        for start in range(0, len(order), batch_pairs):
            chunk = [np.asarray(token_lists[i]) for i in order[start:start + batch_pairs]]
            states = self._segments(chunk, int_dtype)
            for tokens, st in zip(chunk, states):
                body = tokens[1:]  # passage tokens + [SEP], as a pair holds them
                new += body.tobytes() not in self.store
                self.store.pin(body.tobytes(), tokens[1:-1].copy(), st.astype(self.state_dtype))
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return new

    def _query_states(self, tokens: np.ndarray, int_dtype: Any) -> np.ndarray:
        key = tokens.tobytes()
        with self._queries_lock:
            found = self._queries.get(key)
            if found is not None:
                self._queries.move_to_end(key)
                return found
        states = self._segments([tokens], int_dtype)[0]
        with self._queries_lock:
            self._queries[key] = states
            while len(self._queries) > 64:
                self._queries.popitem(last=False)
        return states

    # ------------------------------------------------------------------ scoring
    def run(self, feed: dict[str, np.ndarray], lengths: Sequence[int]) -> np.ndarray:
        """The model's output for a padded pair batch (`feed`: input_ids, attention_mask, token_type_ids;
        `lengths`: each pair's real length). When every passage's states are stored, only the joint layers run;
        otherwise the whole model runs once and the new passages' states are kept from it."""
        ids, types = feed["input_ids"], feed["token_type_ids"]
        n, longest = ids.shape
        int_dtype = ids.dtype
        n_query = [int(int(lengths[r]) - types[r, : int(lengths[r])].sum()) for r in range(n)]
        found: list[np.ndarray | None] = []
        for row in range(n):
            body = ids[row, n_query[row]:int(lengths[row])]  # passage tokens + [SEP]
            found.append(self.store.lookup(body, prefix=self.prefix))
        result: np.ndarray | None = None
        miss = [r for r, got in enumerate(found) if got is None]
        hit = [r for r, got in enumerate(found) if got is not None]
        if miss:  # the whole model for these rows, keeping their passages' states
            rows = np.asarray(miss)
            out, cut = self.whole.run(None, {k: feed[k][rows] for k in self._whole_inputs})
            result = np.empty((n, *np.shape(out)[1:]), dtype=np.float32)
            result[rows] = out
            for j, row in enumerate(miss):
                nq, length = n_query[row], int(lengths[row])
                self.store.put(ids[row, nq:length].tobytes(), cut[j, nq:length + 1].astype(self.state_dtype))
        if hit:  # only the joint layers for rows whose passages are stored
            rows = np.asarray(hit)
            states = np.zeros((len(hit), longest + 1, self.hidden_size), dtype=np.float32)
            for j, row in enumerate(hit):
                nq, length = n_query[row], int(lengths[row])
                states[j, :nq] = self._query_states(ids[row, :nq], int_dtype)
                states[j, nq:length + 1] = found[row]
            out = np.asarray(self.joint.run(None, {self._states_input: states,
                                                   **{k: feed[k][rows] for k in self._pair_inputs}})[0])
            if result is None:
                result = np.empty((n, *out.shape[1:]), dtype=np.float32)
            result[rows] = out
        assert result is not None
        return result
