"""What text the database accepts: everything Unicode can say, except NUL and lone surrogates.

PostgreSQL `text` cannot hold U+0000 at all, and a lone surrogate has no UTF-8 encoding, so
neither can be stored faithfully on every backend. Rather than silently altering a message (and
having SQLite and PostgreSQL disagree), storage rejects such text with `InvalidTextError` on both
backends; a front end that wants to keep going strips NUL before it calls storage. Every other
character round-trips exactly: emoji, right-to-left scripts, combining marks, tabs, other control
characters; there is no length limit beyond the front end's own.
"""

from __future__ import annotations

from storage.errors import InvalidTextError


def check_storable(text: str, *, field: str = "text") -> str:
    """Return `text` unchanged, or raise `InvalidTextError` naming `field` and the position."""
    if not isinstance(text, str):
        raise InvalidTextError(f"{field} must be a string, not {type(text).__name__}")
    position = text.find("\x00")
    if position >= 0:
        raise InvalidTextError(
            f"{field} contains a NUL character (U+0000) at position {position}; "
            "NUL cannot be stored, strip it first"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidTextError(
            f"{field} contains a lone surrogate at position {exc.start}; it has no UTF-8 form"
        ) from None
    return text


def check_optional(text: str | None, *, field: str) -> str | None:
    return None if text is None else check_storable(text, field=field)
