"""Alembic migrations of the app database; `storage.schema` runs them (`chatbot db ...`)."""
