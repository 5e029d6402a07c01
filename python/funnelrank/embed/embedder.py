"""The ONNX Runtime bi-encoder: text -> L2-normalized float32 vectors, as sentence-transformers computes them.

Tokenization uses the model's ``tokenizer.json`` (Hugging Face ``tokenizers``), truncating to the model's
``max_seq_length`` tokens (special tokens included), exactly as sentence-transformers does. Texts are
sorted by token length and batched under a padded-token budget (see :mod:`funnelrank.rerank.batching`); results
come back in input order.

The ONNX graph may output token embeddings (``last_hidden_state`` / ``token_embeddings``, shape
``[batch, seq, dim]``), which are pooled here over the attention mask with the model's pooling mode, or an
already pooled ``sentence_embedding`` (``[batch, dim]``). Inputs are fed by name: ``input_ids`` (required),
``attention_mask`` and ``token_type_ids`` (zeros) when the graph has them.

Text rules: every item must be a ``str`` (bytes must be decoded first) that encodes to UTF-8 (no lone
surrogates). An empty or whitespace-only text is embedded like sentence-transformers embeds it (the
vector of ``[CLS] [SEP]``), so a corpus with empty documents still indexes; reject empty *queries* at the
search layer if they should be refused. Text longer than ``max_seq_length`` tokens is truncated.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.checks import cap_for_tokens, check_text
from funnelrank.embed import default_model as defaults
from funnelrank.embed.model_dir import ModelFiles, read_model_dir
from funnelrank.files import hash_file
from funnelrank.rerank.batching import token_budget_batches

__all__ = ["DEFAULT_MAX_BATCH_SIZE", "DEFAULT_MAX_TOKENS", "Embedder", "default_embedder"]

DEFAULT_MAX_TOKENS = 2048
"""Default padded-token budget per batch (``batch size * longest sequence in the batch``). Measured with
bench/bench_embedder.py --budgets on scifact documents: with 1 thread 1024-2048 embed 9-16% more texts per
second than 8192-16384 (smaller activations stay in cache); with 2 threads 512..8192 are within 3%."""
DEFAULT_MAX_BATCH_SIZE = 256
"""Default cap on texts per batch (short texts would otherwise make very wide batches)."""
TOKENIZE_CHUNK = 4096
"""Texts tokenized (and length-sorted) together; bounds the memory of token ids for huge corpora."""

_TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings")
_POOLED_OUTPUTS = ("sentence_embedding",)
_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("embed() takes a sequence of texts, not a single string; use embed_query() for one text")
    return [check_text(text, f"text {i}") for i, text in enumerate(texts)]


class Embedder:
    """A sentence-transformers-style bi-encoder run with ONNX Runtime.

    Args:
        model_dir: a model directory (``tokenizer.json``, an ONNX file at ``model.onnx`` or
            ``onnx/model.onnx``, and optionally the sentence-transformers config files).
        onnx_path: ONNX file to use instead of the one in `model_dir` (e.g. a quantized export).
        name: a label for reports and caches; defaults to the directory name.
        max_seq_length: override the model's maximum tokens per text.
        normalize: override whether vectors are L2-normalized (default: as the model's modules say).
        max_tokens: padded-token budget per batch.
        max_batch_size: cap on texts per batch.
        threads: ONNX Runtime intra-op threads (0 = ONNX Runtime's default, one per physical core).
        providers: ONNX Runtime execution providers (default CPU).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        onnx_path: str | os.PathLike[str] | None = None,
        name: str | None = None,
        max_seq_length: int | None = None,
        normalize: bool | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        threads: int = 0,
        providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        files = read_model_dir(Path(model_dir), onnx_path=onnx_path)
        if max_seq_length is not None:
            if max_seq_length < 2:
                raise ValueError(f"max_seq_length must be >= 2, got {max_seq_length}")
            files = replace(files, max_seq_length=int(max_seq_length))
        if normalize is not None:
            files = replace(files, normalize=bool(normalize))
        if max_tokens < 1 or max_batch_size < 1:
            raise ValueError(f"max_tokens and max_batch_size must be >= 1, got {max_tokens}, {max_batch_size}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.files: ModelFiles = files
        self.name: str = name or files.root.resolve().name
        self.max_tokens = int(max_tokens)
        self.max_batch_size = int(max_batch_size)
        self.threads = int(threads)

        try:
            tokenizer = Tokenizer.from_file(str(files.tokenizer_path))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed files
            raise ValueError(f"cannot load tokenizer {files.tokenizer_path}: {exc}") from exc
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=files.max_seq_length)
        pad_id = tokenizer.token_to_id("[PAD]")
        if pad_id is None:
            pad_id = tokenizer.token_to_id("<pad>")
        self._pad_id = int(pad_id) if pad_id is not None else 0
        self._tokenizer = tokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(
                str(files.onnx_path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"cannot load ONNX model {files.onnx_path}: {exc}") from exc

        self._inputs: dict[str, Any] = {}
        for inp in self._session.get_inputs():
            if inp.name not in ("input_ids", "attention_mask", "token_type_ids"):
                raise ValueError(
                    f"{files.onnx_path}: unsupported model input {inp.name!r} "
                    "(supported: input_ids, attention_mask, token_type_ids)"
                )
            dtype = _ORT_INT_TYPES.get(inp.type)
            if dtype is None:
                raise ValueError(f"{files.onnx_path}: input {inp.name!r} has type {inp.type}, expected int64/int32")
            self._inputs[inp.name] = dtype
        if "input_ids" not in self._inputs:
            raise ValueError(f"{files.onnx_path}: the model has no input_ids input")

        outputs = {out.name: out for out in self._session.get_outputs()}
        chosen = next((n for n in (*_POOLED_OUTPUTS, *_TOKEN_OUTPUTS) if n in outputs), None)
        self._output = chosen or next(iter(outputs))
        shape = outputs[self._output].shape
        static_dim = shape[-1] if shape and isinstance(shape[-1], int) else None
        if static_dim is not None and len(shape) == 3 and files.pooling:
            static_dim *= len(files.pooling)
        self._dim = int(static_dim or files.dim or self._run([self._encode([""])[0]]).shape[1])
        self._fingerprint: str | None = None

    @classmethod
    def default(cls, precision: str | None = None, **kwargs: Any) -> Embedder:
        """all-MiniLM-L6-v2 at `precision` ("fp32" or "int8", default
        :data:`funnelrank.embed.DEFAULT_PRECISION`); see :func:`funnelrank.embed.default_embedder`."""
        return default_embedder(precision, **kwargs)

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        """Dimension of the output vectors."""
        return self._dim

    @property
    def max_seq_length(self) -> int:
        """Maximum tokens per text (special tokens included); longer texts are truncated."""
        return self.files.max_seq_length

    @property
    def normalize(self) -> bool:
        """Whether output vectors are L2-normalized."""
        return self.files.normalize

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) identifying what this embedder computes: the ONNX and tokenizer file contents,
        max_seq_length, pooling and normalization. Used to key embedding caches."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for path in (self.files.onnx_path, self.files.tokenizer_path):
                hash_file(digest, path)
            digest.update(repr((self.max_seq_length, self.files.pooling, self.normalize)).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"Embedder(name={self.name!r}, onnx={str(self.files.onnx_path)!r}, dim={self.dim}, "
            f"max_seq_length={self.max_seq_length}, pooling={'+'.join(self.files.pooling)}, "
            f"normalize={self.normalize}, max_tokens={self.max_tokens})"
        )

    # ------------------------------------------------------------------ embedding

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text after truncation (special tokens included), i.e. what it costs in a batch."""
        return [len(ids) for ids in self._encode(_check_texts(texts))]

    def embed(self, texts: Sequence[str], *, show_progress: bool = False, desc: str = "embed") -> np.ndarray:
        """Embed `texts` and return a float32 array ``[len(texts), dim]`` in input order.

        Texts are batched by token length under the padded-token budget; `show_progress` shows a tqdm bar
        (on stderr) counting texts.
        """
        from tqdm import tqdm

        items = _check_texts(texts)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        with tqdm(total=len(items), desc=desc, unit="text", disable=not show_progress, file=sys.stderr) as bar:
            for start in range(0, len(items), TOKENIZE_CHUNK):
                ids = self._encode(items[start : start + TOKENIZE_CHUNK])
                for batch in token_budget_batches([len(x) for x in ids], self.max_tokens, self.max_batch_size):
                    out[start + np.asarray(batch, dtype=np.int64)] = self._run([ids[i] for i in batch])
                    bar.update(len(batch))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one text; returns a float32 vector ``[dim]``."""
        return self._run(self._encode([check_text(text, "query")]))[0]

    # ------------------------------------------------------------------ internals

    def _encode(self, texts: list[str]) -> list[list[int]]:
        capped = [cap_for_tokens(text, self.max_seq_length) for text in texts]
        return [enc.ids for enc in self._tokenizer.encode_batch(capped, add_special_tokens=True)]

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        """Run the model on token-id lists (unpadded) and return pooled, maybe normalized, vectors."""
        width = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feed: dict[str, np.ndarray] = {}
        for name, dtype in self._inputs.items():
            value = {"input_ids": input_ids, "attention_mask": mask}.get(name)
            feed[name] = (np.zeros_like(input_ids) if value is None else value).astype(dtype, copy=False)
        result = np.asarray(self._session.run([self._output], feed)[0], dtype=np.float32)
        if result.ndim == 3:
            result = _pool(result, mask, self.files.pooling)
        elif result.ndim != 2:
            raise ValueError(f"{self.files.onnx_path}: output {self._output!r} has rank {result.ndim}, expected 2 or 3")
        if self.normalize:
            norms = np.linalg.norm(result, axis=1, keepdims=True)
            result = result / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(result, dtype=np.float32)


def default_embedder(precision: str | None = None, **kwargs: Any) -> Embedder:
    """An :class:`Embedder` for all-MiniLM-L6-v2 at `precision` ("fp32" or "int8"; default
    :data:`funnelrank.embed.DEFAULT_PRECISION`), from the files :mod:`funnelrank.embed.default_model`
    locates. Extra keyword arguments go to the Embedder.

    Raises FileNotFoundError saying how to create the fp32 export when it is missing.
    """
    model_dir, onnx_path, name = defaults.default_model_files(precision)
    kwargs.setdefault("name", name)
    if onnx_path is None:
        return Embedder(model_dir, **kwargs)
    return Embedder(model_dir, onnx_path=onnx_path, **kwargs)


def _pool(tokens: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Pool token embeddings ``[b, seq, d]`` over the attention mask (sentence-transformers' formulas)."""
    m = mask.astype(np.float32)[:, :, None]
    counts = np.maximum(m.sum(axis=1), 1e-9)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(tokens[:, 0])
        elif mode == "max":
            parts.append(np.where(m > 0, tokens, np.float32(-1e9)).max(axis=1))
        elif mode == "mean":
            parts.append((tokens * m).sum(axis=1) / counts)
        elif mode == "mean_sqrt_len":
            parts.append((tokens * m).sum(axis=1) / np.sqrt(counts))
        else:  # read_model_dir only yields known modes
            raise ValueError(f"unsupported pooling mode {mode!r}")
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
