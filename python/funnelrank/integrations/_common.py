"""What the framework components share: importing the framework with a clear error, owning or borrowing a
:class:`funnelrank.Reranker`, resolving a per-call floor, and turning a framework's documents into
:class:`funnelrank.Candidate` objects (index ids, so the reranker's ``RerankedItem.index`` points back at the
framework's document)."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal, TypeVar, Union

from funnelrank.candidates import Candidate
from funnelrank.checks import check_k
from funnelrank.rerank.policy import check_floor

__all__ = ["DEFAULT", "FloorSetting", "RerankerHolder", "as_pipeline", "candidates_of", "check_floor_setting",
           "check_top_n", "require"]

DEFAULT: Literal["default"] = "default"
"""A component's ``floor="default"``: the reranker's own floor (0.46 for the default reranker)."""

FloorSetting = Union[float, Literal["default"], None]
"""A floor as the components take it: a score in [0, 1], ``"default"`` (the reranker's) or None (no floor)."""

T = TypeVar("T")


def require(module: str, extra: str, package: str) -> ModuleType:
    """Import `module` of an optional framework, or raise ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"funnelrank's {extra} integration needs {package}: pip install 'funnelrank[{extra}]' "
            f"(or pip install {package}); importing {module} failed: {exc}"
        ) from exc


def check_top_n(top_n: int | None, name: str = "top_n") -> int | None:
    """`top_n` if it is None (every document that clears the floor) or a positive int (the policy's ``top_k``
    check, :func:`funnelrank.checks.check_k`), else ValueError naming `name`."""
    return None if top_n is None else check_k(top_n, name)


def check_floor_setting(floor: Any, name: str = "floor") -> FloorSetting:
    """`floor` if it is a number in [0, 1], ``"default"`` or None, else ValueError."""
    if floor is None or (isinstance(floor, str) and floor == DEFAULT):
        return floor  # type: ignore[no-any-return]
    try:
        return check_floor(floor)  # the policy's check
    except ValueError:
        raise ValueError(f"{name} must be a score in [0, 1], 'default' (the reranker's) or None, got {floor!r}") from None


class RerankerHolder:
    """A :class:`funnelrank.Reranker` that a component either borrows (given one) or owns (given a model
    directory, or None for the default cross-encoder shipped with funnelrank), loading it on first use."""

    def __init__(self, reranker: Any = None) -> None:
        from funnelrank.rerank.reranker import Reranker

        if reranker is not None and not isinstance(reranker, (Reranker, str, os.PathLike)):
            raise TypeError(f"reranker must be a funnelrank.Reranker, a model directory or None (the default "
                            f"cross-encoder), got {type(reranker).__name__}")
        self._given = reranker if isinstance(reranker, Reranker) else None
        self.model = None if isinstance(reranker, Reranker) or reranker is None else os.fspath(reranker)
        self._owned: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._given is not None or self._owned is not None

    def get(self) -> Any:
        """The reranker (loads the owned one the first time)."""
        if self._given is not None:
            return self._given
        with self._lock:
            if self._owned is None:
                from funnelrank.rerank.reranker import Reranker

                self._owned = Reranker(self.model)
            return self._owned

    def floor(self, floor: FloorSetting) -> float | None:
        """The floor to rerank with: ``"default"`` becomes the reranker's own."""
        return self.get().floor if floor == DEFAULT else floor  # type: ignore[return-value]

    def close(self) -> None:
        """Close the reranker if this holder loaded it (a borrowed one is its owner's to close)."""
        with self._lock:
            if self._owned is not None:
                self._owned.close()
                self._owned = None


def candidates_of(documents: Sequence[T], text: Callable[[T], str | None],
                  score: Callable[[T], float | None] = lambda _: None,
                  metadata: Callable[[T], Mapping[str, Any] | None] = lambda _: None) -> list[Candidate]:
    """One :class:`Candidate` per document, in order: id = its position (``"0"``, ``"1"``, ...), rank = position
    + 1, the framework's score (if any) as the stage-1 score; a document without text is scored as ``""``."""
    out = []
    for i, doc in enumerate(documents):
        t = text(doc)
        if t is not None and not isinstance(t, str):
            raise TypeError(f"document {i}: its text must be a str, got {type(t).__name__}")
        s = score(doc)
        out.append(Candidate(str(i), t or "", i + 1, None if s is None else float(s), metadata(doc) or {}))
    return out


def as_pipeline(source: Any) -> tuple[Any, bool]:
    """``(pipeline, owned)`` for a :class:`funnelrank.Pipeline` (borrowed) or a :class:`funnelrank.Collection`
    (a pipeline with the default reranker is built over it and owned)."""
    from funnelrank.pipeline import Pipeline
    from funnelrank.store.collection import Collection

    if isinstance(source, Pipeline):
        return source, False
    if isinstance(source, Collection):
        return Pipeline(source), True
    raise TypeError(f"expected a funnelrank.Pipeline or funnelrank.Collection, got {type(source).__name__}")
