"""Alembic revisions; a package only so that a wheel ships them (Alembic skips this file)."""
