"""The README's quick start and the framework integration guide's examples run as printed: each Python example,
executed, prints the text block after it."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
INTEGRATIONS = ROOT / "docs" / "guides" / "integrations.md"

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # the Haystack example stays offline


def examples(text: str) -> list[tuple[str, str]]:
    """(code, expected output) for each ```python block of `text` followed by a ```text block."""
    return re.findall(r"```python\n(.*?)```\n```text\n(.*?)```", text, flags=re.S)


def quick_start_examples() -> list[tuple[str, str]]:
    """(code, expected output) for each ```python block of the README's Quick start followed by a ```text block."""
    text = README.read_text(encoding="utf-8")
    return examples(text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0])


def integration_examples() -> list[tuple[str, str]]:
    """The same for the framework integrations page (LangChain, LlamaIndex, Haystack), all of it."""
    return examples(INTEGRATIONS.read_text(encoding="utf-8"))


def test_the_quick_start_has_two_examples() -> None:
    assert len(quick_start_examples()) == 2


@pytest.mark.parametrize("index", [0, 1])
def test_quick_start_example_prints_what_the_readme_says(index: int) -> None:
    code, expected = quick_start_examples()[index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README quick start example {index + 1}", "exec"), {})
    assert out.getvalue() == expected


def test_the_integrations_page_has_one_example_per_framework() -> None:
    codes = [code for code, _ in integration_examples()]
    assert len(codes) == 3
    for code, module in zip(codes, ("langchain", "llamaindex", "haystack")):
        assert f"from funnelrank.integrations.{module} import" in code


@pytest.mark.parametrize("index", [0, 1, 2])
def test_integration_example_prints_what_the_page_says(index: int) -> None:
    code, expected = integration_examples()[index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{INTEGRATIONS.name} example {index + 1}", "exec"), {})
    assert out.getvalue() == expected
