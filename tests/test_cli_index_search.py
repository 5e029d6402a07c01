"""`funnelrank index` and `funnelrank search` on small fixtures (JSONL, BEIR, plain text)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from funnelrank.cli.main import main
from funnelrank.store.collection import Collection


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"id": "a", "title": "JSON", "text": "encode and decode json documents", "metadata": {"year": 2020}},
    {"id": "b", "text": "regular expressions match text patterns", "metadata": {"year": 2021}, "lang": "en"},
    {"id": 7, "text": "bananas are a yellow fruit", "lang": "de"},
]


def test_index_jsonl_then_search_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _jsonl(tmp_path / "docs.jsonl", ROWS)
    out = tmp_path / "col"
    assert main(["index", str(src), "--out", str(out), "--no-dense", "--metadata-fields", "lang"]) == 0
    c = Collection.load(out)
    assert c.ids() == ["a", "b", "7"]
    assert c.get("a").text == "JSON encode and decode json documents"
    assert c.get("b").metadata == {"year": 2021, "lang": "en"}
    capsys.readouterr()

    assert main(["search", str(out), "json documents", "--json", "--no-rerank", "--top-k", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["results"][0]["id"] == "a" and data["results"][0]["stage1"]["bm25"]["rank"] == 1
    assert main(["search", str(out), "yellow fruit", "--json", "--no-rerank", "--filter", '{"lang": "en"}']) == 0
    assert json.loads(capsys.readouterr().out)["no_evidence"] is True
    assert main(["search", str(out), "regular expressions", "--no-rerank"]) == 0
    table = capsys.readouterr().out
    assert "bm25:1" in table and " b" in table


def test_index_beir_and_text(tmp_path: Path) -> None:
    beir = tmp_path / "beir"
    beir.mkdir()
    _jsonl(beir / "corpus.jsonl", [{"_id": "d1", "title": "T", "text": "hello world", "metadata": {"k": 1}}])
    txt = tmp_path / "notes.txt"
    txt.write_text("first line about cats\n\nsecond line about dogs\n", encoding="utf-8")
    out = tmp_path / "col"
    assert main(["index", str(beir), str(txt), "--out", str(out), "--no-dense", "--txt-mode", "line"]) == 0
    c = Collection.load(out)
    assert c.ids() == ["d1", "notes.txt:1", "notes.txt:3"]
    assert c.get("d1").text == "T hello world" and c.get("d1").metadata == {"k": 1}
    assert c.get("notes.txt:3").metadata == {"source": "notes.txt", "line": 3}
    docs_dir = tmp_path / "docs"
    (docs_dir / "sub").mkdir(parents=True)
    (docs_dir / "sub" / "x.txt").write_text("whole file one", encoding="utf-8")
    (docs_dir / "y.txt").write_text("whole file two", encoding="utf-8")
    assert main(["index", str(docs_dir), "--out", str(tmp_path / "col2"), "--no-dense"]) == 0
    assert Collection.load(tmp_path / "col2").ids() == ["sub/x.txt", "y.txt"]


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": \n'), "docs.jsonl:2: malformed JSON"),
        (lambda p: p.write_text('{"id": "a"}\n'), 'field \'text\''),
        (
            lambda p: p.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n{"id": "a", "text": "z"}\n'),
            "docs.jsonl:3: duplicate document id 'a' (first seen at ",
        ),
        (lambda p: p.write_bytes(b'{"id": "a", "text": "\xff"}\n'), "invalid UTF-8"),
        (lambda p: p.write_text(""), "hold no documents"),
    ],
)
def test_index_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: object, fragment: str) -> None:
    src = tmp_path / "docs.jsonl"
    setup(src)  # type: ignore[operator]
    assert main(["index", str(src), "--out", str(tmp_path / "col"), "--no-dense"]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "col" / "manifest.json").exists()


def test_index_duplicate_id_across_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An id repeated in a second source names both places; nothing is written."""
    first = _jsonl(tmp_path / "one.jsonl", [{"id": "n1", "text": "alpha"}, {"id": "dup", "text": "beta"}])
    second = tmp_path / "notes"
    second.mkdir()
    (second / "x.jsonl").write_text('{"id": "dup", "text": "gamma"}\n', encoding="utf-8")
    assert main(["index", str(first), str(second), "--out", str(tmp_path / "col"), "--no-dense"]) == 2
    err = capsys.readouterr().err
    assert f"{second / 'x.jsonl'}:1: duplicate document id 'dup' (first seen at {first}:2)" in err
    assert not (tmp_path / "col").exists()


def test_search_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(tmp_path / "none"), "q", "--no-rerank"]) == 2
    assert "no such collection directory" in capsys.readouterr().err
    out = tmp_path / "col"
    assert main(["index", str(_jsonl(tmp_path / "d.jsonl", ROWS)), "--out", str(out), "--no-dense"]) == 0
    capsys.readouterr()
    assert main(["search", str(out), "q", "--no-rerank", "--filter", "{year: 1}"]) == 2
    assert "--filter is not valid JSON" in capsys.readouterr().err
    assert main(["search", str(out), "q", "--no-rerank", "--retriever", "dense"]) == 2
    assert "needs a dense collection" in capsys.readouterr().err


def test_dense_index_reuses_the_embedding_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from funnelrank.embed.default_model import fp32_model_dir

    model = fp32_model_dir()  # the default embedder lives in the cache too: keep it visible
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / model.name).symlink_to(model, target_is_directory=True)
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "cache"))
    src = _jsonl(tmp_path / "docs.jsonl", ROWS)
    assert main(["index", str(src), "--out", str(tmp_path / "a"), "--dense", "--embedding-cache", "mine"]) == 0
    cached = list((tmp_path / "cache" / "embeddings").rglob("*.npy"))
    assert len(cached) == 1 and "mine" in str(cached[0])
    stamp = cached[0].stat().st_mtime_ns
    assert main(["index", str(src), "--out", str(tmp_path / "b"), "--dense", "--embedding-cache", "mine"]) == 0
    assert cached[0].stat().st_mtime_ns == stamp  # read, not rewritten
    a, b = Collection.load(tmp_path / "a"), Collection.load(tmp_path / "b")
    assert a.dense and b.dense
    vec = a.embed_query("yellow fruit")
    assert a.search_dense(vec, k=3)[0] == b.search_dense(vec, k=3)[0] and a.search_dense(vec, k=1)[0] == ["7"]
    assert main(["index", str(src), "--out", str(tmp_path / "c"), "--dense", "--no-embedding-cache"]) == 0
    assert len(list((tmp_path / "cache" / "embeddings").rglob("*.npy"))) == 1
