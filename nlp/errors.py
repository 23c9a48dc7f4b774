"""Errors a user can cause and fix: the CLI prints them as one line and exits 2."""


class NlpError(Exception):
    """Base class for user-facing nlp errors."""


class EmptyInputError(NlpError, ValueError):
    """A context with no text in it (empty or whitespace only)."""


class DataError(NlpError):
    """Training data that is missing, empty, unknown or malformed."""


class CheckpointError(NlpError):
    """A checkpoint directory that is missing, incomplete, corrupt or tampered with."""
