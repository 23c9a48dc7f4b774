"""Errors the CLI reports as one line on stderr with exit code 2."""


class CliError(Exception):
    """Bad arguments or input that the user can fix."""
