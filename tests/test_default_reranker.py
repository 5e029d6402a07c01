"""The default cross-encoder ships inside the package: it loads with no network, is what the default lookup
finds, and ranks an answering passage above unrelated ones (a real model: these assertions can fail)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from funnelrank.models import default_reranker_path
from funnelrank.rerank import CrossEncoder
from funnelrank.rerank.default_model import RERANKER_ENV, default_reranker_dir


@pytest.fixture(scope="module")
def model() -> CrossEncoder:
    return CrossEncoder.from_pretrained(default_reranker_path())


def test_packaged_model_is_complete() -> None:
    path = default_reranker_path()
    for name in ("model.onnx", "tokenizer.json", "config.json", "tokenizer_config.json", "MODEL_CARD.md"):
        assert (path / name).is_file(), name
    # what the repository carries for the model (model.onnx committed once, plus any weight patch) stays < 50 MB
    import funnelrank.models

    pkg = Path(funnelrank.models.__file__).parent / funnelrank.models.PACKAGED_RERANKER
    assert sum(f.stat().st_size for f in pkg.iterdir() if f.is_file()) < 50 * 1000 * 1000


def test_default_lookup_falls_back_to_the_packaged_model(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RERANKER_ENV, raising=False)
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "empty-cache"))
    assert default_reranker_dir() == default_reranker_path()


def test_ranks_answering_passages_first(model: CrossEncoder) -> None:
    cases = [
        ("how long does a flea live",
         ["A flea can live up to a year, but its lifespan depends on the availability of hosts.",
          "The Treaty of Westphalia ended the Thirty Years' War in 1648.",
          "Concrete flooring costs between $2 and $6 per square foot installed."]),
        ("what is the capital of france",
         ["Paris is the capital and most populous city of France.",
          "Fleas are small flightless insects that feed on blood.",
          "The mitochondrion is the powerhouse of the cell."]),
    ]
    for query, passages in cases:
        scores, logits = model.predict(query, passages)
        assert np.all(np.isfinite(logits))
        assert int(np.argmax(scores)) == 0, (query, scores)
        assert scores[0] > 0.5 > max(scores[1:]), (query, scores)
