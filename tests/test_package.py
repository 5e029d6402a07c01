import subprocess
import sys

import funnelrank
import pytest


@pytest.mark.core
def test_core_imports_and_exposes_error_type() -> None:
    assert issubclass(funnelrank.IndexFileError, OSError)


def test_cli_help_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "funnelrank", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "eval" in out.stdout
