"""The demo corpus builder (on a fake stdlib written here and on the real one) and `funnelrank demo`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from funnelrank.cli import demo_corpus
from funnelrank.cli.demo_corpus import Passage, build_demo_corpus, load_demo_corpus, split_passages
from funnelrank.cli.main import main


def test_split_passages_at_paragraphs_and_word_limit() -> None:
    text = "one two three\n\nfour five\n\n\n" + " ".join(f"w{i}" for i in range(7))
    assert split_passages(text, max_words=5) == ["one two three four five", "w0 w1 w2 w3 w4", "w5 w6"]
    assert split_passages("a  b\n c", max_words=10) == ["a b c"]
    assert split_passages("  \n\n ", max_words=3) == []
    with pytest.raises(ValueError):
        split_passages("x", max_words=0)


def test_build_from_sources_without_importing(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "pkg" / "test").mkdir(parents=True)
    (root / "idlelib").mkdir()
    (root / "mymod.py").write_text(
        '"""Module doc with enough words here."""\n'
        "raise SystemExit('imported!')\n"  # proves the builder parses rather than imports
        "def visible(a, b=2):\n    '''Add two numbers and return the sum of them.'''\n"
        "def _private():\n    '''Private helper that must not appear anywhere.'''\n"
        "def short():\n    '''Too short.'''\n"
        "class Thing:\n    '''A thing that holds other things together.'''\n"
        "    def method(self, x):\n        '''Do something useful with x and return it.\n\n        " + "word " * 10 + "'''\n"
        "    def _hidden(self):\n        '''Hidden method with a long enough doc string.'''\n"
    )
    (root / "pkg" / "__init__.py").write_text('"""The package documentation string goes here."""\n')
    (root / "pkg" / "test" / "__init__.py").write_text('"""Tests are skipped even with long docs."""\n')
    (root / "idlelib" / "__init__.py").write_text('"""IDLE is skipped even with long docs."""\n')
    (root / "broken.py").write_text("def (:\n")
    passages = build_demo_corpus(root, max_words=10, include_compiled=False)
    by_id = {p.id: p for p in passages}
    assert list(by_id) == ["mymod", "mymod.visible", "mymod.Thing", "mymod.Thing.method", "mymod.Thing.method#2",
                           "pkg"]
    assert by_id["mymod.visible"].title == "mymod.visible(a, b=2)"
    assert by_id["mymod.Thing"].title == "class mymod.Thing"
    assert by_id["mymod.Thing.method#2"].text == " ".join(["word"] * 10)
    with pytest.raises(FileNotFoundError, match="no Python standard library sources"):
        build_demo_corpus(tmp_path / "lib" / "idlelib", include_compiled=False)


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_real_stdlib_corpus(cache_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNELRANK_CACHE", str(cache_env))
    passages, path, _ = load_demo_corpus()
    assert path.parent == cache_env / "demo" and path.is_file()
    ids = {p.id for p in passages}
    assert 2000 <= len(passages) <= 20000
    assert {"json.dumps", "subprocess.run", "argparse.ArgumentParser", "sorted", "math.sqrt"} <= ids
    assert len(ids) == len(passages)  # ids are unique
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"_id", "title", "text"}  # BEIR corpus format


def test_cache_is_reused_and_damaged_cache_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path))
    builds: list[int] = []

    def fake_build(root: Path | None = None) -> list[Passage]:
        builds.append(1)
        return [Passage("a.b", "a.b()", "some text"), Passage("a.b#2", "a.b()", "more text")]

    monkeypatch.setattr(demo_corpus, "build_demo_corpus", fake_build)
    passages, path, built = load_demo_corpus()
    assert built and len(builds) == 1 and [p.id for p in passages] == ["a.b", "a.b#2"]
    again, path2, built2 = load_demo_corpus()
    assert path2 == path and not built2 and again == passages and len(builds) == 1
    path.write_text('{"_id": "x"')  # damaged: rebuilt, not trusted
    rebuilt, _, built3 = load_demo_corpus()
    assert built3 and rebuilt == passages and len(builds) == 2
    _, _, built4 = load_demo_corpus(rebuild=True)
    assert built4 and len(builds) == 3
    assert [p.name for p in (tmp_path / "demo").iterdir()] == [path.name]  # no temporary files left behind


def test_cache_dir_falls_back_when_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FUNNELRANK_CACHE", str(blocker / "sub"))
    assert demo_corpus.demo_cache_dir().parent.name == "funnelrank-cache"


def test_demo_prints_results(cache_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FUNNELRANK_CACHE", str(cache_env))
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Python 3." in out and "Indexed" in out
    assert out.count('Query: "') == 4
    blocks = out.split('Query: "')[1:]
    json_block = next(b for b in blocks if b.startswith("serialize a Python object to a JSON"))
    assert json_block.count(" json.") >= 3  # BM25's top 5 is about the json module
    assert all("    5. " in b and "    6. " not in b for b in blocks)  # top 5 each


def test_demo_custom_query_and_top_k(cache_env: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FUNNELRANK_CACHE", str(cache_env))
    assert main(["demo", "--quiet", "-q", "square root of a number", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count('Query: "') == 1 and "math.sqrt" in out and "    4. " not in out
    assert main(["demo", "--quiet", "-k", "0"]) == 2
    assert "--top-k must be >= 1" in capsys.readouterr().err
