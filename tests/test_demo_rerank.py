"""`funnelrank demo` stage 2: reranked order next to BM25's, and the floor refusing the off-topic query.
Uses a tiny random cross-encoder (scores are meaningless; the structure and the floor logic are tested)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from funnelrank.cli.main import main


@pytest.fixture(scope="module")
def model_dir(tiny_cross_encoder_dir: Path) -> Path:
    return tiny_cross_encoder_dir


@pytest.fixture()
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path_factory.getbasetemp() / "demo-rerank-cache"))


def test_demo_shows_reranked_order_and_refuses_off_topic(
    cache: None, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--quiet", "--model", str(model_dir), "--floor", "0", "-k", "3", "--candidates", "10"]) == 0
    out = capsys.readouterr().out
    blocks = out.split('\nQuery: "')[1:]
    assert len(blocks) == 4
    for block in blocks:
        assert "Reranked: cross-encoder over BM25's top 10, floor 0.00" in block
        reranked = block.split("Reranked:")[1]
        lines = re.findall(r"^\s+(\d)\.\s+([0-9.]+)\s+\(BM25 #(\d+)\s*\) (\S+)$", reranked, flags=re.M)
        assert [int(r[0]) for r in lines] == [1, 2, 3]
        scores = [float(r[1]) for r in lines]
        assert scores == sorted(scores, reverse=True)
        assert all(1 <= int(r[2]) <= 10 for r in lines)
    assert 'Off-topic query (the floor should refuse it): "a good recipe for chocolate chip cookies"' in out

    # A floor above every possible score: every query, the off-topic one included, answers "no evidence".
    assert main(["demo", "--quiet", "--model", str(model_dir), "--floor", "1", "--candidates", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("no evidence: no passage clears the floor") == 5


def test_demo_without_a_reranker_says_so(cache: None, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FUNNELRANK_RERANKER", str(tmp_path / "missing"))
    assert main(["demo", "--quiet", "-q", "gzip"]) == 0
    out = capsys.readouterr().out
    assert "Reranking skipped:" in out and "Reranked:" not in out
    assert main(["demo", "--quiet", "-q", "gzip", "--no-rerank"]) == 0
    assert "Reranking skipped" not in capsys.readouterr().out
