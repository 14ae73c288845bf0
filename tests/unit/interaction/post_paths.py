"""Two apps side by side, to compare POST /interactions' fast path (the asyncpg driver on PostgreSQL, the
inline sqlite3 connection on SQLite) with the session's path: answers, rows and outbox rows without what
differs between runs. Used by test_inline_post.py (SQLite) and tests/e2e/test_interaction_driver_path.py."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import event, insert, select, text

import services.interaction.interactions.router as interaction_router
from servicekit.db import Database
from servicekit.service import API, create_app
from servicekit.tables import OUTBOX
from services.interaction.interactions.models import Interaction
from services.interaction.main import SPEC
from services.interaction.models import metadata
from services.interaction.replica.directory import CustomerDirectory
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import InteractionSettings
from tests.unit.interaction.conftest import CustomerService
from tests.unit.interaction.test_direct_post import VARYING

SURVEY = {"customer_id": "c-1", "type": "survey", "survey": "nps", "score": 7, "occurred_at": "2026-11-03T08:00:00Z"}
# Values that differ between two runs of the same request: ids, times, and JSON holding them.
UNSTABLE = {"id", "recorded_at", "complaint_updated_at", "due_at", "created_at", "event_id", "payload", "headers"}
UUIDISH = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Side:
    """One app on a database of its own; `fast` False: the session's path; `path`: its SQLite file, if any."""

    def __init__(self, app: Any, http: httpx.AsyncClient, fast: bool, path: Path | None = None) -> None:
        self.app, self.http, self.fast, self.path = app, http, fast, path
        self.database: Database = app.state.database
        self.statements: list[str] = []
        self.wakes = 0
        self.database.on_outbox_commit(self.woken)

    def woken(self) -> None:
        self.wakes += 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            self.statements.append(statement)

        event.listen(self.database.engine.sync_engine, "before_cursor_execute", seen)
        try:
            yield
        finally:
            event.remove(self.database.engine.sync_engine, "before_cursor_execute", seen)

    async def post(self, **kwargs: Any) -> httpx.Response:
        saved = interaction_router.usable
        if not self.fast:
            interaction_router.usable = lambda _engine: False  # type: ignore[assignment]
        try:
            return await self.http.post("/interactions", **kwargs)
        finally:
            interaction_router.usable = saved  # type: ignore[assignment]

    async def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The interactions and outbox rows, without what differs between runs (ids, times)."""
        async with self.database.sessions() as session:
            table = Interaction.__table__  # type: ignore[attr-defined]
            stored = (await session.execute(select(table).order_by(text("recorded_at")))).mappings()
            interactions = [{k: v for k, v in row.items() if k not in UNSTABLE} for row in stored]
            outbox = (await session.execute(select(OUTBOX).order_by(OUTBOX.c.id))).mappings().all()
        events = []
        for row in outbox:
            payload = orjson.loads(row["payload"])
            data = {k: v for k, v in payload.pop("data").items() if k not in ("interaction_id", "complaint_id")}
            envelope = {k: v for k, v in payload.items() if k not in ("id", "time", "correlationid")}
            headers = [h for h in row["headers"] if h[0] != "ce_id"]
            fixed = {k: v for k, v in row.items() if k not in UNSTABLE}
            data_text = UUIDISH.sub("", orjson.dumps(data).decode())
            events.append({**fixed, "envelope": envelope, "data": data_text, "headers": headers})
        return interactions, events


@contextlib.asynccontextmanager
async def side_on(url: str, fast: bool, path: Path | None = None) -> AsyncIterator[Side]:
    """An interaction API on `url` with customer c-1 known, its customer service answered in process."""
    # The run-time settings stay cached through a test, so both sides read them once, at the first post.
    settings = InteractionSettings(database_url=url, runtime_settings_cache_s=300)
    app = create_app(SPEC, settings, roles=(API,))
    async with app.state.database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            insert(KnownCustomer.__table__),  # type: ignore[attr-defined]
            [{"customer_id": "c-1", "version": 1, "erased": False, "updated_at": datetime.now(UTC)}],
        )
    app.state.customer_directory = CustomerDirectory(
        "http://customer", timeout_s=1, transport=httpx.MockTransport(CustomerService()), batch_wait_s=0.05
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://interaction") as http,
    ):
        yield Side(app, http, fast, path)


def answer(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(k, VARYING.sub(b"", v.encode()).decode()) for k, v in response.headers.items() if k != "x-request-id"]
    return response.status_code, VARYING.sub(b"", response.content), sorted(headers)
