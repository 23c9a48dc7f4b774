"""Long id lists cut for `IN (...)`: every backend limits the parameters of one statement
(SQLite 32,766 by default, some builds 999), so each list stays well under all of them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

IN_LIST_SIZE = 900

T = TypeVar("T")


def in_chunks(ids: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(ids), IN_LIST_SIZE):
        yield ids[start : start + IN_LIST_SIZE]
