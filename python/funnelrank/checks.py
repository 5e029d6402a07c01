"""Validation of user-supplied text and counts, shared by every entry point (collection, embedder, cross-encoder)."""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np

__all__ = ["CHARS_PER_TOKEN_CAP", "MAX_K", "brief", "cap_for_tokens", "check_k", "check_text"]

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel = 3
_BRIEF.maxstring = 60
_BRIEF.maxother = 60
_BRIEF.maxlong = 40


def brief(value: object) -> str:
    """A bounded repr of a user-supplied value, for error messages: it never recurses deeply and never prints a
    400-digit number or a megabyte string in full (``brief(10**400)`` is ``'100000000000000000...0000000000000000000'``)."""
    try:
        return _BRIEF.repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails must not hide the real error
        return f"<{type(value).__name__}>"

CHARS_PER_TOKEN_CAP = 100
"""Characters kept per token that can count, when a text is cut before tokenization: no WordPiece/BPE token
of real text spans this many characters (WordPiece's own limit on a word is 100)."""


def check_text(text: object, what: str, *, type_error: type[Exception] = TypeError) -> str:
    """Return `text` if it is a ``str`` that encodes as UTF-8 (no lone surrogates); raise a clear error otherwise.

    `what` names the value in the message ("query", "passage 3", "texts[2] (id 'a')"). A non-str raises
    `type_error` (TypeError by default), with a hint for bytes; text that cannot be encoded raises ValueError
    naming the character position."""
    if not isinstance(text, str):
        hint = " (decode bytes to str first)" if isinstance(text, (bytes, bytearray)) else ""
        raise type_error(f"{what} must be str, got {type(text).__name__}{hint}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode (cannot be encoded as UTF-8: {exc.reason} "
                         f"at character {exc.start})") from None
    return text


def cap_for_tokens(text: str, max_tokens: int) -> str:
    """`text` cut to ``max_tokens * CHARS_PER_TOKEN_CAP`` characters, for a tokenizer that keeps only the
    first `max_tokens` tokens anyway: tokenizing a 20 MB document in full to keep 256 tokens took 30 s and
    3 GB. The tokens kept are the same (see CHARS_PER_TOKEN_CAP)."""
    cap = max_tokens * CHARS_PER_TOKEN_CAP
    return text if len(text) <= cap else text[:cap]


MAX_K = 2**63 - 1
"""The largest `k` / `candidates` / `top_k` accepted (the core's 64-bit sizes). Any `k` beyond a collection's
size returns every match, so a larger one could only be a mistake."""


def check_k(k: Any, what: str = "k") -> int:
    """`k` if it is an int (not bool) in ``[1, MAX_K]``; ValueError naming `what` otherwise.

        >>> check_k(10, "top_k")
        10
        >>> check_k(2**63, "candidates")
        Traceback (most recent call last):
        ...
        ValueError: candidates must be a positive int no larger than 9223372036854775807 (2**63 - 1), got 9223372036854775808
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{what} must be a positive int, got {k!r}")
    if k > MAX_K:
        raise ValueError(f"{what} must be a positive int no larger than {MAX_K} (2**63 - 1), got {k!r}")
    return int(k)
