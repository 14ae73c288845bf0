from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from servicekit.db import Database
from servicekit.events.contracts.customer import CustomerCreated
from servicekit.events.envelope import CloudEvent, EventData, Received
from services.interaction.directory import CustomerServiceUnavailable, CustomerSnapshot
from services.interaction.models import metadata

SLA_HOURS = {"critical": 4.0, "high": 24.0, "medium": 72.0, "low": 168.0}


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    # A file, not :memory:, because every pooled connection to :memory: would be a database of its own.
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'interaction.db'}", source="/crm/interaction")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield db
    await db.dispose()


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
