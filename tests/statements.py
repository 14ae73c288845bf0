"""Capturing the SQL a test's code sends, to count round trips."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def statements_sent(engine: Engine, startswith: str = "") -> Iterator[list[str]]:
    """The statements sent on `engine` inside the block that start with `startswith` (each execute or
    executemany once), in order; the list stays readable after the block."""
    sent: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(startswith):
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", seen)
