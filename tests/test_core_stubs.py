"""The committed type stubs of the native core, python/funnelrank/_core.pyi, are what `make stubs` generates from
the built module (tools/core_stubs.py): a binding changed without regenerating them fails here."""

from __future__ import annotations

import difflib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "python" / "funnelrank" / "_core.pyi"

pytestmark = [
    pytest.mark.core,
    pytest.mark.skipif(importlib.util.find_spec("pybind11_stubgen") is None,
                       reason="pybind11-stubgen is not installed (it is in the dev extra: pip install -e '.[dev]')"),
]


def test_committed_core_stubs_are_generated_from_the_module(tmp_path: Path) -> None:
    out = tmp_path / "_core.pyi"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "core_stubs.py"), "--output", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, f"tools/core_stubs.py failed:\n{run.stdout}\n{run.stderr}"
    committed = STUB.read_text(encoding="utf-8")
    generated = out.read_text(encoding="utf-8")
    if generated != committed:
        diff = "".join(difflib.unified_diff(committed.splitlines(keepends=True), generated.splitlines(keepends=True),
                                            "python/funnelrank/_core.pyi (committed)", "generated from the module"))
        pytest.fail(f"python/funnelrank/_core.pyi is stale: run `make stubs` and commit it.\n{diff}", pytrace=False)
