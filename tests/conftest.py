"""Shared pytest fixtures. Real evaluation data lives in ../shared/data (never copied here);
tests that need it use the `shared_data` fixture, which skips with a clear message when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FUNNELRANK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test (saying why) when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared evaluation data not found at {SHARED_DATA} (set FUNNELRANK_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ONNX cross-encoder directory (see rerank_fakes.build_tiny_cross_encoder), built once per
    session for the tests that need a real model on disk (CLI, service, demo); skips without torch."""
    pytest.importorskip("torch")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rerank_fakes import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))[1]
