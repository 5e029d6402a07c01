"""Writes python/funnelrank/_core.pyi, the type stubs of the native core, generated from the built module.

`make stubs` runs it; tests/test_core_stubs.py runs it into a temporary folder and fails when the committed
file differs. pybind11-stubgen (the dev extra) reads the signatures and docstrings pybind11 gives each
function: the types come from the bindings (cpp/bindings/hints.h names what the checked arguments accept).
The only change made to its output is the header saying so.

    python tools/core_stubs.py [--output PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

STUB = Path(__file__).resolve().parents[1] / "python" / "funnelrank" / "_core.pyi"
MODULE = "funnelrank._core"
HEADER = (
    "# Generated from the built module by `make stubs` (tools/core_stubs.py, pybind11-stubgen): do not edit.\n"
    "# Signatures and docstrings come from the bindings, cpp/bindings/.\n"
)


def generate() -> str:
    """The stub text for the funnelrank._core that this interpreter imports."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pybind11_stubgen", MODULE, "--output-dir", tmp, "--exit-code"],
                       check=True)
        text = (Path(tmp) / Path(*MODULE.split("."))).with_suffix(".pyi").read_text(encoding="utf-8")
    return HEADER + text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=STUB, help=f"where to write the stubs (default: {STUB})")
    args = parser.parse_args()
    args.output.write_text(generate(), encoding="utf-8")
    print(f"core stubs: wrote {args.output}")


if __name__ == "__main__":
    main()
