"""A PostgreSQL + pgvector corpus table (:class:`PgCorpus`): its schema, loading, vector and full-text search,
and funnelrank's metadata filters as jsonb conditions (:func:`filter_condition`). The retrievers over it are
in :mod:`funnelrank.retrieve.postgres`, whose module doc gives the table and an example.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from funnelrank.retrieve.filters import validate_filter, validate_metadata

if TYPE_CHECKING:
    from funnelrank.embed import Embedder

__all__ = ["DEFAULT_TABLE", "PgCorpus", "filter_condition"]

DEFAULT_TABLE = "funnelrank_documents"
"""The table :class:`PgCorpus` uses unless told otherwise."""


_INSERT_BATCH = 1000
_EF_SEARCH_MAX = 1000  # pgvector's limit on hnsw.ef_search
_RANGE_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the PostgreSQL source needs psycopg 3: pip install 'funnelrank[postgres]'"
        ) from exc
    return psycopg


def _vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of a float vector, ``[0.1,0.2,...]``."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


# --------------------------------------------------------------------------------------------- filters


def filter_condition(filter: Mapping[str, Any] | None, column: str = "metadata") -> tuple[Any, list[Any]]:
    """A metadata filter (:mod:`funnelrank.retrieve.filters`) as a SQL condition on the jsonb `column` and its
    parameters: ``(psycopg.sql.Composed, params)``; ``TRUE`` and no parameters for no filter. ValueError for a
    malformed filter (:func:`funnelrank.retrieve.filters.validate_filter`). Field names and operands are parameters;
    the SQL text comes from this function's own constants only.

        >>> cond, params = filter_condition({"lang": "en", "year": {"gte": 2020}})
        >>> params
        ['lang', '{"v": ["en"]}', 'lang', 'year', '{"gte": 2020}', 'year']
    """
    psycopg = _psycopg()
    sql = psycopg.sql
    if filter is None:
        return sql.SQL("TRUE"), []
    conditions = validate_filter(filter)
    col = sql.Identifier(column)
    # The field's value as a jsonb array (a scalar wrapped), so "any element matches" is one path query.
    values = sql.SQL(
        "(CASE WHEN jsonb_typeof({col} -> %s) = 'array' THEN {col} -> %s ELSE jsonb_build_array({col} -> %s) END)"
    ).format(col=col)
    member = sql.SQL("coalesce(jsonb_path_exists({values}, 'strict $[*] ? (@ == $v[*])', %s::jsonb), false)").format(
        values=values
    )
    parts: list[Any] = []
    params: list[Any] = []

    def is_member(field: str, operands: list[Any]) -> None:
        params.extend([field, field, field, json.dumps({"v": operands})])

    for field, ops in conditions.items():
        if "eq" in ops:
            parts.append(member)
            is_member(field, [ops["eq"]])
        if "in" in ops:
            parts.append(member)
            is_member(field, list(ops["in"]))
        excluded = ([ops["ne"]] if "ne" in ops else []) + list(ops.get("nin", []))
        if "ne" in ops or "nin" in ops:
            parts.append(sql.SQL("NOT {}").format(member))
            is_member(field, excluded)
        ranges = [op for op in _RANGE_SQL if op in ops]
        if ranges:
            # Every range operator must hold for one element; types must agree (jsonpath compares numbers
            # with numbers and strings with strings, anything else is unknown, i.e. no match).
            path = "strict $[*] ? (" + " && ".join(f"@ {_RANGE_SQL[op]} ${op}" for op in ranges) + ")"
            parts.append(sql.SQL("coalesce(jsonb_path_exists({values}, {path}, %s::jsonb), false)").format(
                values=values, path=sql.Literal(path)))
            params.extend([field, field, field, json.dumps({op: ops[op] for op in ranges})])
        if "exists" in ops:
            parts.append(sql.SQL("({col} ? %s)" if ops["exists"] else "NOT ({col} ? %s)").format(col=col))
            params.append(field)
    if not parts:
        return sql.SQL("TRUE"), []
    return sql.SQL("(") + sql.SQL(" AND ").join(parts) + sql.SQL(")"), params


# --------------------------------------------------------------------------------------------- the table


_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")


class PgCorpus:
    """A corpus table in PostgreSQL with pgvector (see the module doc for its schema): creating and loading it,
    and the searches the retrievers run.

        >>> corpus = PgCorpus("postgresql://postgres@/postgres?host=/tmp/pg", "docs")
        >>> corpus.create(replace=True); corpus.add(["a"], ["cats sleep on mats"]); len(corpus)
        1

    Args:
        dsn: a libpq connection string or URI (``postgresql://user:pass@host:5432/db``).
        table: the table, ``name`` or ``schema.name`` (letters, digits, ``_``).
        embedder: the bi-encoder for documents added without vectors and for queries; None loads
            :func:`funnelrank.embed.default_embedder` when first needed.
        text_config: the text-search configuration of the full-text column (e.g. ``english``, ``simple``).

    Raises ConnectionError when the database cannot be reached, ValueError for a bad table name.
    """

    def __init__(
        self,
        dsn: str,
        table: str = DEFAULT_TABLE,
        *,
        embedder: Embedder | None = None,
        text_config: str = "english",
    ) -> None:
        if not isinstance(table, str) or not _TABLE_RE.fullmatch(table):
            raise ValueError(f"table must be a name or schema.name of letters, digits and _, got {table!r}")
        psycopg = _psycopg()
        self.dsn = dsn
        self.table = table
        self.text_config = text_config
        self._embedder = embedder
        self._ident = psycopg.sql.Identifier(*table.split("."))
        try:
            self.conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"cannot reach PostgreSQL at {_redact(dsn)}: {str(exc).strip()}") from None
        self._ef_search: int | None = None

    def __repr__(self) -> str:
        return f"PgCorpus({_redact(self.dsn)!r}, {self.table!r})"

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> PgCorpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        """The bi-encoder (loaded on first use when none was given)."""
        if self._embedder is None:
            from funnelrank.embed import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def _sql(self, template: str) -> Any:
        return _psycopg().sql.SQL(template).format(table=self._ident)

    def exists(self) -> bool:
        """Whether the table exists."""
        row = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", [self.table]).fetchone()
        return bool(row and row[0])

    def create(
        self, dim: int | None = None, *, replace: bool = False, hnsw_m: int = 16, hnsw_ef_construction: int = 200
    ) -> None:
        """Create the pgvector extension (if missing) and the table with its indexes (see the module doc).

        `dim` defaults to the embedder's dimension. `replace` drops an existing table first; without it an
        existing table is an error (ValueError)."""
        psycopg = _psycopg()
        sql = psycopg.sql
        dim = self.embedder.dim if dim is None else int(dim)
        if dim < 1 or dim > 16000:
            raise ValueError(f"dim must be in 1..16000 (pgvector's limit), got {dim}")
        for name, value in (("hnsw_m", hnsw_m), ("hnsw_ef_construction", hnsw_ef_construction)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an int >= 2, got {value!r}")
        if not self.conn.execute("SELECT 1 FROM pg_ts_config WHERE cfgname = %s", [self.text_config]).fetchone():
            raise ValueError(f"no text-search configuration {self.text_config!r} in this database")
        with self.conn.transaction():
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            if replace:
                self.conn.execute(self._sql("DROP TABLE IF EXISTS {table}"))
            elif self.exists():
                raise ValueError(f"table {self.table} already exists (pass replace=True to drop it first)")
            name = self.table.split(".")[-1]
            self.conn.execute(sql.SQL(
                "CREATE TABLE {table} (id text PRIMARY KEY, text text NOT NULL, "
                "metadata jsonb NOT NULL DEFAULT '{{}}', embedding vector({dim}) NOT NULL, "
                "tsv tsvector GENERATED ALWAYS AS (to_tsvector({config}::regconfig, text)) STORED)"
            ).format(table=self._ident, dim=sql.Literal(dim), config=sql.Literal(self.text_config)))
            self.conn.execute(sql.SQL(
                "CREATE INDEX {idx} ON {table} USING hnsw (embedding vector_cosine_ops) "
                "WITH (m = {m}, ef_construction = {ef})"
            ).format(idx=sql.Identifier(f"{name}_embedding_hnsw"), table=self._ident, m=sql.Literal(hnsw_m),
                     ef=sql.Literal(hnsw_ef_construction)))
            self.conn.execute(sql.SQL("CREATE INDEX {idx} ON {table} USING gin (tsv)").format(
                idx=sql.Identifier(f"{name}_tsv_gin"), table=self._ident))
            self.conn.execute(sql.SQL("CREATE INDEX {idx} ON {table} USING gin (metadata jsonb_path_ops)").format(
                idx=sql.Identifier(f"{name}_metadata_gin"), table=self._ident))

    @property
    def dim(self) -> int:
        """The dimension of the table's ``embedding`` column. ValueError when the table is missing or has no
        ``vector(n)`` column named embedding."""
        row = self.conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'embedding' "
            "AND NOT attisdropped", [self.table]).fetchone()
        if row is None:
            raise ValueError(f"table {self.table} does not exist or has no embedding column "
                             "(create it with PgCorpus.create)")
        if row[0] is None or row[0] < 1:
            raise ValueError(f"table {self.table}: its embedding column has no dimension (expected vector(n))")
        return int(row[0])

    def __len__(self) -> int:
        row = self.conn.execute(self._sql("SELECT count(*) FROM {table}")).fetchone()
        return int(row[0]) if row else 0

    def ids(self) -> list[str]:
        """Every document id in the table (sorted)."""
        return [r[0] for r in self.conn.execute(self._sql("SELECT id FROM {table} ORDER BY id")).fetchall()]

    def matching_ids(self, filter: Mapping[str, Any] | None) -> list[str]:
        """The ids (sorted) of the documents matching `filter` (all of them for None), as PostgreSQL
        evaluates it (see :func:`filter_condition`).

            >>> corpus.matching_ids({"lang": "en"})
            ['a']
        """
        cond, params = filter_condition(filter)
        query = _psycopg().sql.SQL("SELECT id FROM {table} WHERE {cond} ORDER BY id").format(
            table=self._ident, cond=cond)
        return [r[0] for r in self.conn.execute(query, params).fetchall()]

    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        vectors: Any = None,
        show_progress: bool = False,
    ) -> int:
        """Insert documents (in one transaction: all or none) and return how many.

        `vectors` (``[len(ids), dim]``) are their embeddings; None embeds `texts` with :attr:`embedder`.
        ValueError for a duplicate id (in `ids` or already in the table), mismatched lengths, empty or
        invalid texts, metadata that :func:`funnelrank.retrieve.filters.validate_metadata` refuses, non-finite vectors
        or vectors whose dimension is not the table's."""
        from funnelrank.checks import check_text

        psycopg = _psycopg()
        ids, texts = list(ids), list(texts)
        if len(ids) != len(texts):
            raise ValueError(f"got {len(ids)} ids but {len(texts)} texts")
        seen: set[str] = set()
        for doc_id in ids:
            if not isinstance(doc_id, str) or not doc_id:
                raise ValueError(f"document ids must be non-empty strings, got {doc_id!r}")
            if doc_id in seen:
                raise ValueError(f"duplicate document id {doc_id!r}")
            seen.add(doc_id)
        for doc_id, text in zip(ids, texts):
            check_text(text, f"the text of document {doc_id!r}", type_error=ValueError)
        metas = [{} for _ in ids] if metadata is None else list(metadata)
        if len(metas) != len(ids):
            raise ValueError(f"got {len(ids)} ids but {len(metas)} metadata entries")
        metas = [validate_metadata(m or {}, where=f"metadata of {d!r}") for d, m in zip(ids, metas)]
        dim = self.dim
        if vectors is None:
            if self.embedder.dim != dim:
                raise ValueError(f"embedding dimension mismatch: the embedder makes {self.embedder.dim}-d vectors, "
                                 f"table {self.table} holds vector({dim})")
            vectors = self.embedder.embed(texts, show_progress=show_progress, desc=f"embed {self.table}")
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(ids):
            raise ValueError(f"vectors must be [{len(ids)}, {dim}], got shape {array.shape}")
        if array.shape[1] != dim:
            raise ValueError(f"embedding dimension mismatch: vectors are {array.shape[1]}-d, "
                             f"table {self.table} holds vector({dim})")
        if not np.isfinite(array).all():
            raise ValueError("vectors hold NaN or infinite values")
        if not ids:
            return 0
        copy = self._sql("COPY {table} (id, text, metadata, embedding) FROM STDIN")
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                with cur.copy(copy) as out:
                    for i, doc_id in enumerate(ids):
                        out.write_row((doc_id, texts[i], json.dumps(metas[i]), _vector_literal(array[i])))
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or str(exc)
            raise ValueError(f"duplicate document id: {detail.strip()} (already in table {self.table})") from None
        except psycopg.errors.UndefinedTable:
            raise ValueError(f"table {self.table} does not exist (create it with PgCorpus.create)") from None
        return len(ids)

    # ------------------------------------------------------------------ searches

    def _set_ef_search(self, k: int) -> None:
        ef = min(_EF_SEARCH_MAX, max(128, k))
        if ef != self._ef_search:
            self.conn.execute("SELECT set_config('hnsw.ef_search', %s, false), "
                              "set_config('hnsw.iterative_scan', 'strict_order', false)", [str(ef)])
            self._ef_search = ef

    def search_vector(
        self, vector: np.ndarray, k: int, filter: Mapping[str, Any] | None = None
    ) -> list[tuple[str, str, dict[str, Any], float]]:
        """The top-`k` ``(id, text, metadata, cosine similarity)`` for a query vector, best first."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        dim = self.dim
        if vector.shape[0] != dim:
            raise ValueError(f"embedding dimension mismatch: the query vector is {vector.shape[0]}-d, "
                             f"table {self.table} holds vector({dim})")
        cond, params = filter_condition(filter)
        self._set_ef_search(k)
        literal = _vector_literal(vector)
        query = _psycopg().sql.SQL(
            "SELECT id, text, metadata, 1 - (embedding <=> %s::vector) FROM {table} WHERE {cond} "
            "ORDER BY embedding <=> %s::vector LIMIT %s"
        ).format(table=self._ident, cond=cond)
        rows = self.conn.execute(query, [literal, *params, literal, k]).fetchall()
        return [(r[0], r[1], r[2], float(r[3])) for r in rows]

    def search_text(
        self, query: str, k: int, filter: Mapping[str, Any] | None = None
    ) -> list[tuple[str, str, dict[str, Any], float]]:
        """The top-`k` ``(id, text, metadata, ts_rank)`` by full-text search (any of the query's lexemes)."""
        cond, params = filter_condition(filter)
        sql = _psycopg().sql.SQL(
            "WITH q AS (SELECT replace(plainto_tsquery(%s::regconfig, %s)::text, ' & ', ' | ')::tsquery AS q) "
            "SELECT id, text, metadata, ts_rank(tsv, q.q) AS score FROM {table}, q WHERE tsv @@ q.q AND {cond} "
            "ORDER BY score DESC, id LIMIT %s"
        ).format(table=self._ident, cond=cond)
        rows = self.conn.execute(sql, [self.text_config, query, *params, k]).fetchall()
        return [(r[0], r[1], r[2], float(r[3])) for r in rows]


def _redact(dsn: str) -> str:
    """`dsn` without its password (for messages)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn))
