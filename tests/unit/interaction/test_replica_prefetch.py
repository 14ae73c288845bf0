from datetime import UTC, datetime

from sqlalchemy import select

from contracts.customer import CustomerCreated
from servicekit.unit_of_work import UnitOfWork
from services.interaction.replica import handlers
from services.interaction.replica.directory import CustomerServiceUnavailable, CustomerSnapshot
from services.interaction.replica.models import KnownCustomer
from tests.unit.interaction.conftest import received

AT = datetime(2026, 1, 1, tzinfo=UTC)


class Directory:
    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.batches: list[list[str]] = []
        self.single: list[str] = []

    def snapshot(self, customer_id: str) -> CustomerSnapshot:
        return CustomerSnapshot(customer_id, "active", f"ref-{customer_id}", 1, AT)

    async def fetch_many(self, ids):
        self.batches.append(list(ids))
        if self.down:
            raise CustomerServiceUnavailable("down")
        return {i: (None if i == "gone" else self.snapshot(i)) for i in ids}

    async def fetch(self, customer_id: str):
        self.single.append(customer_id)
        return self.snapshot(customer_id)


def created(customer_id: str) -> CustomerCreated:
    return CustomerCreated(
        customer_id=customer_id, kind="company", status="active", created_at=AT, external_ref_set=True
    )


async def apply(database, directory, monkeypatch, ids):
    monkeypatch.setattr(handlers, "_directory", lambda: directory)
    events = [received(created(i)) for i in ids]
    async with database.transaction() as session:
        uow = UnitOfWork(session)
        await handlers.prefetch_customers(uow, events)
        for event in events:
            await handlers.on_customer_created(uow, event)
    async with database.transaction() as session:
        rows = (await session.execute(select(KnownCustomer.customer_id, KnownCustomer.external_ref))).all()
    return dict(rows)


async def test_a_batch_of_new_customers_reads_their_references_in_one_call(database, monkeypatch):
    directory = Directory()
    replica = await apply(database, directory, monkeypatch, ["a", "b", "gone"])
    assert directory.batches == [["a", "b", "gone"]] and directory.single == []
    assert replica == {"a": "ref-a", "b": "ref-b", "gone": None}


async def test_an_unavailable_batch_lookup_falls_back_to_one_call_per_customer(database, monkeypatch):
    directory = Directory(down=True)
    replica = await apply(database, directory, monkeypatch, ["a", "b"])
    assert directory.single == ["a", "b"]
    assert replica == {"a": "ref-a", "b": "ref-b"}
