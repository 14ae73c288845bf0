from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select

from contracts.customer import CustomerCreated
from servicekit.db import Database
from servicekit.events.envelope import CloudEvent, EventData, Received
from servicekit.service import API, create_app
from servicekit.tables import OUTBOX
from services.interaction.main import SPEC
from services.interaction.models import metadata
from services.interaction.replica.directory import CustomerDirectory, CustomerServiceUnavailable, CustomerSnapshot
from services.interaction.settings import InteractionSettings
from tests.unit.databases import Schema, install_schema

SLA_HOURS = {"critical": 4.0, "high": 24.0, "medium": 72.0, "low": 168.0}


SCHEMA = Schema(metadata, source="/crm/interaction")


@pytest.fixture
def database_schema() -> Schema:
    return SCHEMA


class FakeCustomerService:
    """Stands in for the customer service's GET /customers/{id}; records who was asked."""

    def __init__(self, *known: str, down: bool = False) -> None:
        self.known = set(known)
        self.down = down
        self.asked: list[str] = []

    async def fetch(self, customer_id: str) -> CustomerSnapshot | None:
        self.asked.append(customer_id)
        if self.down:
            raise CustomerServiceUnavailable("connection refused")
        if customer_id not in self.known:
            return None
        return CustomerSnapshot(
            customer_id=customer_id, status="active", version=1, updated_at=datetime(2026, 1, 1, tzinfo=UTC)
        )


def received(data: EventData, event_id: str | None = None) -> Received:
    envelope = CloudEvent.wrap(data, source="/crm/customer")
    if event_id is not None:
        envelope.id = event_id
    return Received(envelope=envelope, data=data)


def created(customer_id: str, *, external_ref: str | None = None, status: str = "active") -> CustomerCreated:
    return CustomerCreated(
        customer_id=customer_id,
        kind="company",
        status=status,
        external_ref=external_ref,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def outbox_events(database: Database) -> list[dict]:
    """Every CloudEvent in the outbox, oldest first, as parsed JSON plus its topic and key."""
    async with database.sessions() as session:
        rows = (
            await session.execute(select(OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.payload).order_by(OUTBOX.c.id))
        ).all()
    return [{"topic": topic, "key": key, **orjson.loads(payload)} for topic, key, payload in rows]


CUSTOMER = {"id": "c-1", "status": "active", "external_ref": None, "version": 1, "updated_at": "2026-01-01T00:00:00Z"}


class CustomerService:
    """httpx transport playing the customer service: knows c-1 (and `extra` ids), or fails as told."""

    def __init__(self) -> None:
        self.fail: Callable[[], httpx.Response] | None = None
        self.calls: list[httpx.Request] = []
        self.extra: set[str] = set()
        self.erased: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if self.fail is not None:
            return self.fail()
        if request.url.path == "/customers/lookup":
            ids = orjson.loads(request.content)["ids"]
            found = [i for i in ids if i == "c-1" or i in self.extra]
            return httpx.Response(
                200,
                json={
                    "customers": [{**CUSTOMER, "id": i, "erased": i in self.erased} for i in found],
                    "unknown": [i for i in ids if i not in found],
                },
            )
        if request.url.path == "/customers/c-1":
            return httpx.Response(200, json=CUSTOMER)
        customer_id = request.url.path.rsplit("/", 1)[-1]
        if customer_id in self.extra:
            return httpx.Response(200, json={**CUSTOMER, "id": customer_id})
        return httpx.Response(404, json={"title": "Customer not found"})


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, CustomerService]]:
    settings = InteractionSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    app = create_app(SPEC, settings, roles=(API,))
    database: Database = app.state.database
    await install_schema(database, SCHEMA)
    customers = CustomerService()
    app.state.customer_directory = CustomerDirectory(
        "http://customer", timeout_s=1, transport=httpx.MockTransport(customers), batch_wait_s=0.5
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://interaction") as client,
    ):
        client.database = database  # type: ignore[attr-defined]  # for tests that look into the outbox
        yield client, customers
    assert app.state.customer_directory is None  # closed by the router's lifespan
