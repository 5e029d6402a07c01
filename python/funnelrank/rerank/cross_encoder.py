"""ONNX Runtime cross-encoder: (query, passage) pairs in, one relevance logit per pair out.

A cross-encoder is a Hugging Face sequence classifier (BERT, MiniLM, ELECTRA, XLM-R, ...) exported to ONNX.
It is loaded from a local directory holding ``model.onnx`` (or ``onnx/model.onnx``), ``tokenizer.json`` and
``config.json``, or, when online and ``huggingface_hub`` is installed, by its Hub repository id.

Scores. A single-logit head scores ``sigmoid(logit)``. A two-logit head (``[not relevant, relevant]``) scores
``softmax(logits)[:, 1]``; its reported logit is ``l1 - l0``, so ``score == sigmoid(logit)`` holds for both.
Scores are absolute (0..1), which is what makes a relevance floor meaningful.

Truncation. Each pair is encoded as the tokenizer's pair template (``[CLS] query [SEP] passage [SEP]`` for
BERT) and cut to ``max_length`` tokens by cutting the passage only ("only_second"). A query longer than
half of the token budget (``max_length`` minus the special tokens) is first cut to that half, so that the
passage always keeps at least the other half.

Long passages. With ``chunking=ChunkSpec(window, stride)`` a passage longer than the window is split into
windows of ``window`` passage tokens overlapping by ``stride`` tokens (cut at word starts), every window is
scored with the query, and the passage's logit is the maximum over its windows.

Use `CrossEncoder` directly for one-off scoring (`predict`), or through `RerankScheduler` / `Reranker`,
which batch pairs across concurrent requests.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from funnelrank.checks import cap_for_tokens, check_text
from funnelrank.rerank.batching import DEFAULT_BATCH_OVERHEAD_TOKENS, plan_batches
from funnelrank.rerank.model_files import PRECISIONS, find_onnx, model_max_length, num_labels, resolve_model_dir
from funnelrank.rerank.scorer import Scorer, Scores, done_future


@dataclass(frozen=True)
class ChunkSpec:
    """Split long passages into overlapping windows and score a passage as the max over its windows.

    `window` is the number of passage tokens per window (further capped so that query + window fit in
    ``max_length``), `stride` the number of tokens consecutive windows share, and `max_chunks` the most
    windows kept per passage (the rest of a very long passage is ignored).
    """

    window: int = 256
    stride: int = 64
    max_chunks: int = 16

    def __post_init__(self) -> None:
        if self.window < 8:
            raise ValueError(f"ChunkSpec.window must be >= 8 tokens, got {self.window}")
        if not 0 <= self.stride < self.window:
            raise ValueError(f"ChunkSpec.stride must be in [0, window), got {self.stride}")
        if self.max_chunks < 1:
            raise ValueError(f"ChunkSpec.max_chunks must be >= 1, got {self.max_chunks}")


@dataclass
class EncodedPairs:
    """Tokenized (query, passage) pairs of one request, unpadded.

    ``input_ids[i]`` / ``type_ids[i]`` are the token ids of pair `i`; ``owner[i]`` is the index of the
    passage pair `i` belongs to (several pairs per passage when chunking), or None when pairs and passages
    are one-to-one. ``query_truncated`` says whether the query had to be cut.
    """

    input_ids: list[np.ndarray]
    type_ids: list[np.ndarray] | None
    n_passages: int
    owner: np.ndarray | None = None
    query_truncated: bool = False

    @property
    def lengths(self) -> np.ndarray:
        """Token count of every pair."""
        return np.fromiter((a.shape[0] for a in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float64)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def reduce_to_passages(pair_logits: np.ndarray, encoded: EncodedPairs) -> np.ndarray:
    """Per-passage logits from per-pair logits: identity, or the max over a passage's chunks."""
    if encoded.owner is None:
        return np.asarray(pair_logits, dtype=np.float64)
    out = np.full(encoded.n_passages, -np.inf)
    np.maximum.at(out, encoded.owner, np.asarray(pair_logits, dtype=np.float64))
    return out


class CrossEncoder(Scorer):
    """An ONNX Runtime cross-encoder. Build it with `CrossEncoder.from_pretrained`.

    Thread-safe: `encode` and `infer` may be called from several threads at once (ONNX Runtime sessions
    and `tokenizers` tokenizers are both safe for concurrent use; the tokenizer is configured once here).
    """

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        config: dict[str, Any],
        *,
        max_length: int,
        chunking: ChunkSpec | None = None,
        positive_label: int = 1,
        source: str = "",
    ) -> None:
        from tokenizers import Tokenizer

        self.session = session
        self._split: Any = None  # a funnelrank.rerank.split.SplitScorer when passage states are reused
        self._load_args: tuple[Any, dict[str, Any]] | None = None
        self.config = config
        self.source = source
        self.chunking = chunking
        inputs = {i.name: i for i in session.get_inputs()}
        if "input_ids" not in inputs or "attention_mask" not in inputs:
            raise ValueError(
                f"{source}: ONNX model inputs are {sorted(inputs)}; a cross-encoder needs input_ids and attention_mask"
            )
        self.uses_token_type_ids = "token_type_ids" in inputs
        self._int_dtype = np.int32 if inputs["input_ids"].type == "tensor(int32)" else np.int64
        outputs = [o.name for o in session.get_outputs()]
        self._output = "logits" if "logits" in outputs else outputs[0]
        self.num_labels = num_labels(config)
        if self.num_labels not in (1, 2):
            raise ValueError(
                f"{source}: the classification head has {self.num_labels} labels; a cross-encoder needs 1 (relevance "
                "logit) or 2 ([irrelevant, relevant])"
            )
        if positive_label not in (0, 1):
            raise ValueError("positive_label must be 0 or 1")
        self.positive_label = positive_label

        self._tokenizer = tokenizer
        tokenizer.no_padding()
        self.n_special = int(tokenizer.num_special_tokens_to_add(True))
        if max_length <= self.n_special + 2:
            raise ValueError(f"max_length={max_length} leaves no room for the query and passage")
        self.max_length = int(max_length)
        tokenizer.enable_truncation(self.max_length, strategy="only_second")
        # Same vocabulary, no truncation: for query lengths and passage chunking.
        self._plain = Tokenizer.from_str(tokenizer.to_str())
        self._plain.no_truncation()
        self._plain.no_padding()
        self.max_query_tokens = max(1, (self.max_length - self.n_special) // 2)
        pad = config.get("pad_token_id")
        self.pad_id = int(pad) if isinstance(pad, int) else 0

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        max_length: int | None = None,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        onnx_file: str | None = None,
        chunking: ChunkSpec | None = None,
        allow_spinning: bool = True,
        warmup: bool = True,
        revision: str | None = None,
        reuse_passage_states: bool | str = False,
        state_store: Any = None,
        precision: str = "fp32",
    ) -> CrossEncoder:
        """Load a cross-encoder from a local directory or a Hugging Face Hub repository id.

        Args:
            name_or_path: a directory with ``model.onnx`` or ``onnx/model.onnx``, ``tokenizer.json`` and
                ``config.json``; or a Hub id such as ``cross-encoder/ms-marco-MiniLM-L-6-v2`` (needs network
                and ``pip install 'funnelrank[hub]'``; only those files are downloaded).
            max_length: pair token budget; default ``min(512, max_position_embeddings, model_max_length)``.
            device: ``"cpu"`` or ``"cuda"`` (needs onnxruntime-gpu).
            intra_op_threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice, all cores).
            onnx_file: a specific ONNX file inside the directory (e.g. ``onnx/model_qint8_avx512.onnx``).
            chunking: score long passages as the max over token windows (see `ChunkSpec`).
            allow_spinning: let ONNX Runtime's worker threads spin between runs (lower latency, more CPU).
            warmup: run one small batch at load so the first request is not slow.
            revision: Hub revision (branch, tag or commit) when loading by id.
            reuse_passage_states: for a segment cross-encoder (the default reranker), compute each passage's
                lower-layer states once and reuse them for every query (`funnelrank.rerank.split`): True (or
                ``"exact"``) reuses them only where the pair holds the passage exactly as stored, so scores
                equal the whole graph's; ``"prefix"`` also lets a truncated passage reuse the states
                `precompute_passages` stored for its longest form (approximate; measure it first with
                ``funnelrank optimize``). ValueError for any other model.
            state_store: a `funnelrank.rerank.split.StateStore` to keep the states in (shared by replicas;
                default: a new one of 256 MiB).
            precision: ``"fp32"`` (the model file as it is) or ``"int8"`` (ONNX Runtime's dynamic int8
                quantization of its MatMul weights, per channel, derived once into the cache; int8 compute
                moves scores, so check it with ``funnelrank optimize`` before using it).
        """
        directory = resolve_model_dir(name_or_path, onnx_file=onnx_file, revision=revision)
        onnx_path = find_onnx(directory, onnx_file)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "int8":
            if reuse_passage_states:
                raise ValueError("precision='int8' and reuse_passage_states cannot be combined")
            from funnelrank.rerank.variants import int8_variant

            onnx_path = int8_variant(onnx_path)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        tok_config_path = directory / "tokenizer_config.json"
        tok_config = json.loads(tok_config_path.read_text(encoding="utf-8")) if tok_config_path.is_file() else {}

        import onnxruntime as ort
        from tokenizers import Tokenizer

        limit = model_max_length(config, tok_config)
        if max_length is None:
            max_length = limit
        elif not 8 <= int(max_length) <= limit:
            raise ValueError(f"max_length={max_length} is outside [8, {limit}] (the model's limit)")

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if intra_op_threads is not None:
            if intra_op_threads < 1:
                raise ValueError("intra_op_threads must be >= 1")
            options.intra_op_num_threads = int(intra_op_threads)
        if not allow_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError("device='cuda' needs onnxruntime-gpu with CUDA; this onnxruntime has only "
                                 f"{ort.get_available_providers()}")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        model = cls(session, tokenizer, config, max_length=int(max_length), chunking=chunking, source=str(onnx_path))
        if reuse_passage_states not in (False, True, "exact", "prefix"):
            raise ValueError(f"reuse_passage_states must be False, True, 'exact' or 'prefix', got {reuse_passage_states!r}")
        if reuse_passage_states:
            from funnelrank.rerank.split import SplitScorer, StateStore

            state_store = state_store if state_store is not None else StateStore()
            model._split = SplitScorer.for_model(
                onnx_path, config, store=state_store, prefix=reuse_passage_states == "prefix",
                session_factory=lambda path: ort.InferenceSession(str(path), options, providers=providers))
        model._load_args = (name_or_path, {
            "max_length": max_length, "device": device, "intra_op_threads": intra_op_threads, "onnx_file": onnx_file,
            "chunking": chunking, "allow_spinning": allow_spinning, "warmup": warmup, "revision": revision,
            "reuse_passage_states": reuse_passage_states, "state_store": state_store, "precision": precision,
        })
        if warmup:
            model.warmup()
        return model

    @property
    def replicable(self) -> bool:
        """Whether `replicas` can load more copies (the model was built by `from_pretrained`)."""
        return self._load_args is not None

    def replicas(self, n: int) -> list[CrossEncoder]:
        """This model and ``n - 1`` more loaded the same way, each with its own ONNX Runtime session: one per
        `RerankScheduler` worker (e.g. ``RerankScheduler(ce.replicas(2))`` with ``intra_op_threads=1``).
        Only for models built by `from_pretrained`."""
        if n < 1:
            raise ValueError("replicas: n must be >= 1")
        if n > 1 and self._load_args is None:
            raise ValueError("replicas() needs a CrossEncoder built by CrossEncoder.from_pretrained")
        out = [self]
        for _ in range(n - 1):
            assert self._load_args is not None
            name, kwargs = self._load_args
            out.append(type(self).from_pretrained(name, **kwargs))
        return out

    def warmup(self) -> None:
        """Run one small batch so that ONNX Runtime allocates and tunes before the first real request."""
        enc = self.encode("warm up query", ["a short passage", "another passage that is a little longer"])
        self.infer(enc.input_ids, enc.type_ids)

    # ------------------------------------------------------------------ encoding
    def encode(self, query: str, passages: Sequence[str]) -> EncodedPairs:
        """Tokenize the (query, passage) pairs of one request (unpadded; see the module doc on truncation)."""
        query = check_text(query, "query")
        if not query.strip():
            raise ValueError("query is empty")
        if isinstance(passages, str):
            raise TypeError("passages must be a sequence of str, not a single str")
        texts = [check_text(p, f"passage {i}") for i, p in enumerate(passages)]
        query, cut = self._cut_query(query)
        if self.chunking is not None:
            return self._encode_chunked(query, texts, cut)
        pairs = [(query, cap_for_tokens(t, self.max_length)) for t in texts]
        encodings = self._tokenizer.encode_batch(pairs) if pairs else []
        return self._pack(encodings, len(texts), None, cut)

    def _cut_query(self, query: str) -> tuple[str, bool]:
        q = self._plain.encode(cap_for_tokens(query, self.max_length), add_special_tokens=False)
        if len(q.ids) <= self.max_query_tokens:
            return query, False
        end = q.offsets[self.max_query_tokens - 1][1]
        return query[:end], True

    def _encode_chunked(self, query: str, texts: list[str], cut: bool) -> EncodedPairs:
        assert self.chunking is not None
        spec = self.chunking
        q_len = len(self._plain.encode(query, add_special_tokens=False).ids)
        window = max(1, min(spec.window, self.max_length - self.n_special - q_len))
        step = max(1, window - spec.stride)
        limit = spec.max_chunks * step + window  # tokens any window can reach
        plain = (
            self._plain.encode_batch([cap_for_tokens(t, limit) for t in texts], add_special_tokens=False)
            if texts
            else []
        )
        pieces: list[tuple[str, str]] = []
        owner: list[int] = []
        for idx, (text, enc) in enumerate(zip(texts, plain)):
            offsets, words = enc.offsets, enc.word_ids
            n = len(offsets)
            if n <= window:
                pieces.append((query, text))
                owner.append(idx)
                continue
            start = 0
            for _ in range(spec.max_chunks):
                s = start
                while s > 0 and words[s] is not None and words[s] == words[s - 1]:
                    s -= 1  # begin at the start of a word so re-tokenizing the slice gives the same tokens
                end = min(n, start + window)
                pieces.append((query, text[offsets[s][0] : offsets[end - 1][1]]))
                owner.append(idx)
                if end >= n:
                    break
                start += step
        encodings = self._tokenizer.encode_batch(pieces) if pieces else []
        return self._pack(encodings, len(texts), np.asarray(owner, dtype=np.int64), cut)

    def _pack(self, encodings: list[Any], n_passages: int, owner: np.ndarray | None, cut: bool) -> EncodedPairs:
        dtype = self._int_dtype
        ids = [np.asarray(e.ids, dtype=dtype) for e in encodings]
        types = [np.asarray(e.type_ids, dtype=dtype) for e in encodings] if self.uses_token_type_ids else None
        return EncodedPairs(ids, types, n_passages, owner, cut)

    # ------------------------------------------------------------------ inference
    def infer(self, input_ids: Sequence[np.ndarray], type_ids: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Run one batch (padded here to its longest pair); returns one logit per pair (float64).

        For a two-logit head the logit is ``l[positive] - l[other]``.
        """
        n = len(input_ids)
        if n == 0:
            return np.zeros(0)
        longest = max(a.shape[0] for a in input_ids)
        ids = np.full((n, longest), self.pad_id, dtype=self._int_dtype)
        mask = np.zeros((n, longest), dtype=self._int_dtype)
        for row, a in enumerate(input_ids):
            ids[row, : a.shape[0]] = a
            mask[row, : a.shape[0]] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if self.uses_token_type_ids:
            types = np.zeros((n, longest), dtype=self._int_dtype)
            if type_ids is not None:
                for row, a in enumerate(type_ids):
                    types[row, : a.shape[0]] = a
            feed["token_type_ids"] = types
        if self._split is not None:
            out = np.asarray(self._split.run(feed, [a.shape[0] for a in input_ids]), dtype=np.float64)
        else:
            out = np.asarray(self.session.run([self._output], feed)[0], dtype=np.float64)
        return self._combine(out.reshape(n, -1))

    def truncate_text(self, text: str, max_tokens: int) -> str:
        """`text` cut after its first `max_tokens` tokens of this model's tokenizer (whole, when it has no more),
        e.g. for a client's per-document token budget.

            >>> ce.truncate_text("Children's ibuprofen is dosed by weight.", 3)   # doctest: +SKIP
            "Children's"
        """
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        enc = self._plain.encode(check_text(text, "text"), add_special_tokens=False)
        if len(enc.ids) <= max_tokens:
            return text
        return text[: enc.offsets[max_tokens - 1][1]]

    @property
    def state_store(self) -> Any:
        """The `funnelrank.rerank.split.StateStore` of reused passage states (None unless loaded with
        ``reuse_passage_states``)."""
        return None if self._split is None else self._split.store

    def precompute_passages(self, passages: Sequence[str], *, show_progress: bool = False) -> int:
        """Compute and keep the lower-layer states of `passages` (index time), each cut to the most passage
        tokens a pair can hold, so that reranking them later costs only the joint layers. Needs
        ``reuse_passage_states``; returns how many passages were new.

            >>> ce = CrossEncoder.from_pretrained(path, reuse_passage_states=True)   # doctest: +SKIP
            >>> ce.precompute_passages(["Children's ibuprofen: 5-10 mg/kg.", "Adults: 200-400 mg."])  # doctest: +SKIP
            2
        """
        if self._split is None:
            raise ValueError("precompute_passages needs a CrossEncoder loaded with reuse_passage_states=True")
        budget = self.max_length - self.n_special - 1  # the longest passage a pair holds (1-token query)
        lists = []
        for p in passages:
            ids = self._plain.encode(check_text(p, "passage")).ids  # [CLS] p [SEP]
            body = ids[1:-1][:budget]
            lists.append(np.asarray([ids[0], *body, ids[-1]], dtype=self._int_dtype))
        return int(self._split.precompute(lists, int_dtype=self._int_dtype, show_progress=show_progress))

    def _combine(self, logits: np.ndarray) -> np.ndarray:
        if logits.shape[1] == 1:
            return np.asarray(logits[:, 0], dtype=np.float64)
        if logits.shape[1] == 2:
            pos = self.positive_label
            return np.asarray(logits[:, pos] - logits[:, 1 - pos], dtype=np.float64)
        raise ValueError(f"model returned {logits.shape[1]} logits per pair; expected 1 or 2")

    def predict(
        self,
        query: str,
        passages: Sequence[str],
        *,
        max_batch_tokens: int = 4096,
        max_batch_pairs: int = 64,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score passages against one query in this thread, without a scheduler.

        Returns ``(scores, logits)`` in passage order. Pairs are sorted by length and cut into batches by
        the padded-token budget and the per-batch overhead, as `RerankScheduler` does within one request.
        """
        out = self._predict(query, passages, max_batch_tokens=max_batch_tokens, max_batch_pairs=max_batch_pairs)
        return out.scores, out.logits

    def submit(self, query: str, passages: Sequence[str]) -> concurrent.futures.Future[Scores]:
        """The :class:`~funnelrank.rerank.scorer.Scorer` step: scores in this thread (as :meth:`predict`)
        and returns a finished future; a `RerankScheduler` over this model shares it among threads."""
        return done_future(self._predict(query, passages))

    def _predict(self, query: str, passages: Sequence[str], *, max_batch_tokens: int = 4096,
                 max_batch_pairs: int = 64) -> Scores:
        enc = self.encode(query, passages)
        lengths = enc.lengths
        order = np.argsort(lengths, kind="stable")
        pair_logits = np.empty(len(enc))
        for start, end in plan_batches(
            lengths[order], max_batch_tokens=max_batch_tokens, max_batch_pairs=max_batch_pairs,
            batch_overhead_tokens=DEFAULT_BATCH_OVERHEAD_TOKENS,
        ):
            idx = order[start:end]
            pair_logits[idx] = self.infer(
                [enc.input_ids[i] for i in idx], None if enc.type_ids is None else [enc.type_ids[i] for i in idx]
            )
        logits = reduce_to_passages(pair_logits, enc)
        return Scores(sigmoid(logits), logits, enc.query_truncated)
