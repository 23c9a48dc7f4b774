"""Statements whose spelling depends on the backend (INSERT ... ON CONFLICT)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert_insert(session: Session, entity: Any) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which has `on_conflict_do_nothing` / `on_conflict_do_update`.

    SQLite and PostgreSQL spell ON CONFLICT alike, so callers write one statement for both.
    """
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(entity)
    return sqlite.insert(entity)
