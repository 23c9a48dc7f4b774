"""Errors a user or operator can cause and fix: the CLI prints them as one line and exits 2."""

from __future__ import annotations


class StorageError(Exception):
    """Base class for user-facing storage errors."""


class InvalidTextError(StorageError, ValueError):
    """A text the database cannot hold faithfully (NUL characters, lone surrogates)."""


class NotFoundError(StorageError, LookupError):
    """A row that was asked for by name or id does not exist."""


class DuplicateError(StorageError):
    """A row with the same unique key exists already (e.g. a model version name)."""


class NoPreviousVersionError(StorageError):
    """A rollback was asked for but no earlier model version was ever active."""


class TrainingRunInProgressError(StorageError):
    """A training run is already running; only one may run at a time."""


class SchemaOutOfDateError(StorageError):
    """The database's schema revision is not the one this code was written for."""


class MigrationError(StorageError):
    """A migration command failed in a way the user can fix (e.g. an unknown revision)."""


class InvalidFeedbackError(StorageError, ValueError):
    """Feedback that is not +1/-1, or on a message that is not the bot's."""


class DatabaseUnavailableError(StorageError):
    """The database server cannot be reached, or the database file cannot be opened."""


class InvalidDatabaseUrlError(StorageError, ValueError):
    """`CHATBOT_DATABASE_URL` is not a URL SQLAlchemy can use with the drivers we ship."""
