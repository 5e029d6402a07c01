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
