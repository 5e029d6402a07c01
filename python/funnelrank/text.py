"""Validation of user-supplied text, shared by every entry point (collection, embedder, cross-encoder)."""

from __future__ import annotations

__all__ = ["check_text"]


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
