"""Shared pytest fixtures. Real evaluation data lives in ../shared/data (never copied here);
tests that need it use the `shared_data` fixture, which skips with a clear message when absent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A real local multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head and two workers of 1 CPU
    each), started once per test session with ``ray.init`` connected to it; shut down at the end. Tests that
    deploy Ray Serve apps must ``serve.shutdown()`` (or delete their apps) themselves. Skips without ray."""
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
