"""Errors the CLI reports as one line on stderr with exit code 2."""


class CliError(Exception):
    """Bad arguments or input that the user can fix."""


def one_line(exc: Exception) -> str:
    """A pydantic ValidationError (or any error) as one short line: `field: what is wrong`."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}"
    return " ".join(str(exc).split())
