"""Alembic migrations of the app database; `storage.schema_revision` runs them (`chatbot db`)."""
