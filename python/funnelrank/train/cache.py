"""Encode each unique text once through the model's per-segment layers and keep the states on disk.

Each text is one segment "[CLS] text [SEP]" at positions 0.. (exactly as the full graph sees it). Stored: the lower-layer states (float16, one ragged array), and the bi-encoder
embedding of the text (all six layers run per segment, mean-pooled, L2-normalised), which serves as the
dense-retrieval vector for mining and as the teacher for distillation. Resumable: finished texts are
recorded and skipped on a rerun.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from funnelrank.train.model import SegmentCrossEncoder, base_model_dir


def load_tokenizer():  # -> tokenizers.Tokenizer
    """The base model's tokenizer.json with padding and truncation switched off."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def segment_ids(tok, texts: list[str], is_query: bool, max_len: int) -> list[list[int]]:
    """Token ids of each text as its segment "[CLS] text [SEP]", cut to max_len (is_query: documentation only)."""
    out = []
    for enc in tok.encode_batch(texts):
        ids = enc.ids
        out.append(ids[: max_len - 1] + [ids[-1]] if len(ids) > max_len else ids)
    return out


@dataclass
class StateCache:
    """Memory-mapped lower-layer states and teacher embeddings of every text in a TextStore."""

    keys: list[str]
    ids: list[list[int]]
    offsets: np.ndarray
    states: np.ndarray
    emb: np.ndarray

    def segment(self, i: int) -> np.ndarray:
        return self.states[self.offsets[i]: self.offsets[i + 1]]


def build_cache(model: SegmentCrossEncoder, keys: list[str], texts: list[str], out: Path,
                max_q: int = 32, max_p: int = 128, batch_tokens: int = 6144) -> StateCache:
    """Encode (or resume encoding) every text; returns the opened cache."""
    out.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer()
    is_q = [k.startswith("q:") for k in keys]
    q_idx = [i for i, f in enumerate(is_q) if f]
    p_idx = [i for i, f in enumerate(is_q) if not f]
    ids: list[list[int]] = [[] for _ in keys]
    for sel, flag, ml in ((q_idx, True, max_q), (p_idx, False, max_p)):
        for i, t in zip(sel, segment_ids(tok, [texts[i] for i in sel], flag, ml)):
            ids[i] = t
    lens = np.array([len(t) for t in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    hid = model.embeddings.word_embeddings.embedding_dim
    meta = out / "meta.json"
    fresh = not meta.exists() or json.loads(meta.read_text()).get("keys") != keys
    if fresh:
        meta.write_text(json.dumps({"keys": keys, "n_separate": model.n_separate, "max_q": max_q, "max_p": max_p}))
        np.save(out / "done.npy", np.zeros(len(keys), dtype=bool))
    np.save(out / "offsets.npy", offsets)
    mode = "w+" if fresh else "r+"
    states = np.lib.format.open_memmap(out / "states.npy", mode=mode, dtype=np.float16,
                                       shape=(int(offsets[-1]), hid))
    emb = np.lib.format.open_memmap(out / "emb.npy", mode=mode, dtype=np.float32, shape=(len(keys), hid))
    done = np.load(out / "done.npy")
    todo = sorted((i for i in range(len(keys)) if not done[i]), key=lambda i: lens[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in todo:
        if cur and (len(cur) + 1) * lens[i] > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    model.eval()
    n_layers = len(model.layers)
    with torch.inference_mode():
        for b_n, batch in enumerate(tqdm(batches, desc="encode texts", unit="batch")):
            L = int(lens[batch].max())
            inp = torch.zeros((len(batch), L), dtype=torch.int64)
            am = torch.zeros((len(batch), L), dtype=torch.int64)
            pos = torch.zeros((len(batch), L), dtype=torch.int64)
            for r, i in enumerate(batch):
                n = int(lens[i])
                inp[r, :n] = torch.tensor(ids[i])
                am[r, :n] = 1
                pos[r, :n] = torch.arange(n)
            x = model.encode_segment(inp, am, pos)
            xs = x.to(torch.float16).numpy()
            mask = model.pad_mask(am)
            for li in range(model.n_separate, n_layers):
                x = model.layer(li, x, mask)
            m = am.to(torch.float32)[..., None]
            e = torch.nn.functional.normalize((x * m).sum(1) / m.sum(1), dim=-1).numpy()
            for r, i in enumerate(batch):
                n = int(lens[i])
                states[offsets[i]: offsets[i] + n] = xs[r, :n]
                emb[i] = e[r]
                done[i] = True
            if b_n % 50 == 49 or b_n == len(batches) - 1:
                states.flush()
                emb.flush()
                np.save(out / "done.npy", done)
    return StateCache(keys, ids, offsets, np.load(out / "states.npy", mmap_mode="r"), np.load(out / "emb.npy"))
