from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from servicekit.db import Database
from servicekit.service import API, create_app
from servicekit.tables import OUTBOX
from services.customer.main import SPEC, metadata
from services.customer.settings import CustomerSettings
from tests.unit.databases import Schema, install_schema


@dataclass
class Api:
    client: httpx.AsyncClient
    database: Database

    async def create(self, **fields: Any) -> dict[str, Any]:
        body = {"name": "Acme GmbH", "kind": "company", **fields}
        response = await self.client.post("/customers", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    async def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The CloudEvents this service wrote to its outbox, oldest first."""
        async with self.database.sessions() as session:
            rows = (await session.execute(select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).scalars().all()
        events = [orjson.loads(payload) for payload in rows]
        return [e for e in events if event_type is None or e["type"] == event_type]


SCHEMA = Schema(metadata, source="/crm/customer")


@pytest.fixture
def database_schema() -> Schema:
    return SCHEMA


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = CustomerSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}", erasure_keep_attributes=["plan"]
    )
    app = create_app(SPEC, settings, roles=(API,))
    database: Database = app.state.database
    await install_schema(database, SCHEMA)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://customer") as client,
    ):
        yield Api(client, database)
