"""Loading a cross-encoder by Hugging Face Hub id, offline, from a hub cache laid out as huggingface_hub lays it
(built here): a repository with an ONNX file loads as it is; one with only a transformers checkpoint is
exported to ONNX once, cached, and reused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from funnelrank.rerank import CrossEncoder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_repo(cache: Path, repo: str, files: dict[str, Path]) -> Path:
    """A repository snapshot in huggingface_hub's cache layout (refs/main -> snapshots/<commit>/)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    for name, src in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, snapshot / name)
    return snapshot


@pytest.fixture()
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub = pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(cache), raising=False)
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "funnelrank-cache"))
    return cache


def test_a_cached_onnx_repository_loads_offline(offline_hub: Path, tiny_cross_encoder_dir: Path) -> None:
    files = {n: tiny_cross_encoder_dir / n for n in ("config.json", "tokenizer.json")}
    files["onnx/model.onnx"] = tiny_cross_encoder_dir / "model.onnx"
    _hub_repo(offline_hub, "acme/tiny-ce", files)
    by_id = CrossEncoder.from_pretrained("acme/tiny-ce")
    local = CrossEncoder.from_pretrained(tiny_cross_encoder_dir)
    q, ps = "cats sleep", ["cats sleep on mats", "dogs bark"]
    np.testing.assert_allclose(by_id.predict(q, ps)[1], local.predict(q, ps)[1], atol=1e-6)
    assert COMMIT in by_id.source
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE is set"):
        CrossEncoder.from_pretrained("acme/not-cached")


def test_a_checkpoint_only_repository_is_exported_once_and_reused(offline_hub: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from rerank_fakes import build_tiny_cross_encoder

    model, exported = build_tiny_cross_encoder(tmp_path / "src")
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(str(checkpoint))  # type: ignore[attr-defined]
    files = {p.name: p for p in checkpoint.iterdir()}
    files["tokenizer.json"] = exported / "tokenizer.json"
    _hub_repo(offline_hub, "acme/torch-only", files)

    ce = CrossEncoder.from_pretrained("acme/torch-only")
    assert "hub-onnx" in ce.source and Path(ce.source).is_file()
    enc = ce.encode("cats sleep", ["cats sleep on mats", "dogs bark"])
    with torch.no_grad():
        for ids, types, logit in zip(enc.input_ids, enc.type_ids, ce.infer(enc.input_ids, enc.type_ids)):
            out = model(input_ids=torch.tensor(ids[None]), token_type_ids=torch.tensor(types[None]))  # type: ignore[operator]
            assert abs(float(out.logits[0, 0]) - logit) < 1e-4

    import funnelrank.models.export_cross_encoder as export_module

    def no_second_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(export_module, "export_cross_encoder", no_second_export)
    again = CrossEncoder.from_pretrained("acme/torch-only")
    assert again.source == ce.source
