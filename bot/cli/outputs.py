"""Output paths, checked before minutes of work: a run must not fail at its very end because the
place it writes to does not exist, cannot be written, or is something else.

The check writes (and at once removes) a nameless file where the output will go, rather than
asking `os.access`, which says yes to root everywhere and knows nothing of read-only mounts or
`/proc`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection
from pathlib import Path

from bot.cli.errors import CliError

CHECKPOINT_MARKER = "config.json"  # what every checkpoint directory holds


def check_file_output(path: Path, *, suffixes: Collection[str] | None = None) -> None:
    """`path` can be created or overwritten as a file: its directory exists and takes a new file,
    and it is not a directory itself. `suffixes`: the file name must end in one of these."""
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise CliError(
            f"cannot write {path}: the file name must end in {_either(sorted(suffixes))}"
        )
    if path.is_dir():
        raise CliError(f"cannot write {path}: it is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise CliError(f"cannot write {path}: directory {parent} does not exist")
    _probe(parent, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise CliError(f"cannot write {path}: permission denied")


def check_checkpoint_output(path: Path) -> None:
    """A checkpoint may be written to `path`: a new directory (its missing parents are made when
    it is saved) or an existing checkpoint, which saving replaces whole. Any other existing
    directory is refused, since replacing it would delete what it holds."""
    if path.name in ("", ".", ".."):
        raise CliError(
            f"cannot write a checkpoint to {path}: name a new directory, e.g. models/mine"
        )
    if path.exists() and not path.is_dir():
        raise CliError(f"cannot write a checkpoint to {path}: it is a file")
    if path.is_dir() and any(path.iterdir()) and not (path / CHECKPOINT_MARKER).is_file():
        raise CliError(
            f"refusing to write a checkpoint to {path}: it is a directory with other files in it "
            f"(no {CHECKPOINT_MARKER}), which saving would replace"
        )
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CliError(f"cannot write a checkpoint to {path}: {existing} is not a directory")
    _probe(existing, path)


def _probe(directory: Path, target: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None


def _either(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
