"""The unit of work: one transaction and the typed state its steps share.

A consumer batch runs in steps (a preload that reads every row the batch touches, one handler per event,
commit hooks), and a request may call several domain functions; they share what was loaded and what is
pending through the unit of work handed to each of them, never through the session's untyped ``info``
dictionary. A service declares its batch state as a dataclass whose fields all have defaults;
``uow.state(ThatClass)`` returns this transaction's instance, made on first use, so a reader and the
type checker can follow every cache from where it is filled to where it is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from servicekit.db import Database

State = TypeVar("State")


class UnitOfWork:
    """A session inside one transaction, and the per-transaction state of the code running in it."""

    __slots__ = ("_states", "session")

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._states: dict[type[Any], Any] = {}

    def state(self, kind: type[State]) -> State:
        """This transaction's instance of ``kind`` (constructed with no arguments on first use)."""
        found = self._states.get(kind)
        if found is None:
            found = self._states[kind] = kind()
        return cast(State, found)

    def forget(self, kind: type[Any]) -> None:
        """Drop ``kind``'s state, so the next ``state(kind)`` starts afresh (e.g. after a change it cached)."""
        self._states.pop(kind, None)


@asynccontextmanager
async def unit_of_work(database: Database) -> AsyncIterator[UnitOfWork]:
    """One transaction (committed on success, rolled back on error) as a unit of work."""
    async with database.transaction() as session:
        yield UnitOfWork(session)
