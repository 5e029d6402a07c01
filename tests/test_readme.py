"""The README's quick start runs as printed: each Python example, executed, prints the text block after it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start_examples() -> list[tuple[str, str]]:
    """(code, expected output) for each ```python block of the Quick start followed by a ```text block."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```\n```text\n(.*?)```", section, flags=re.S)


def test_the_quick_start_has_two_examples() -> None:
    assert len(quick_start_examples()) == 2


@pytest.mark.parametrize("index", [0, 1])
def test_quick_start_example_prints_what_the_readme_says(index: int) -> None:
    code, expected = quick_start_examples()[index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README quick start example {index + 1}", "exec"), {})
    assert out.getvalue() == expected
