from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from contracts.customer import CustomerCreated
from contracts.erp import ErpOrderPlaced
from contracts.scoring import ScoreUpdated, ScoreValues
from servicekit.events.envelope import CloudEvent, Received
from servicekit.unit_of_work import UnitOfWork
from services.interaction.handlers import BEFORE_BATCH, HANDLERS
from services.interaction.inbound.models import ParkedEvent
from services.interaction.interactions.models import Interaction
from services.interaction.replica import handlers
from services.interaction.replica.directory import CustomerServiceUnavailable, CustomerSnapshot
from services.interaction.replica.models import KnownCustomer
from tests.statements import statements_sent
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


async def apply_batch(database, directory, monkeypatch, events) -> None:
    """As the consumer applies a poll: the batch hook, then every event, in one transaction."""
    monkeypatch.setattr(handlers, "_directory", lambda: directory)
    async with database.transaction() as session:
        uow = UnitOfWork(session)
        await BEFORE_BATCH(uow, events)
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def test_a_batch_of_new_customers_costs_the_same_statements_whatever_its_size(database, monkeypatch):
    sent_per_batch = []
    # The first batch also reads the run-time settings (then cached for a while): not counted.
    await apply_batch(database, Directory(), monkeypatch, [received(created("first"))])
    for size, prefix in ((4, "small-"), (60, "large-")):
        events = [received(created(f"{prefix}{i}")) for i in range(size)]
        with statements_sent(database.engine.sync_engine) as sent:
            await apply_batch(database, Directory(), monkeypatch, events)
        sent_per_batch.append(len(sent))
    assert sent_per_batch[0] == sent_per_batch[1]
    async with database.sessions() as session:
        refs = dict((await session.execute(select(KnownCustomer.customer_id, KnownCustomer.external_ref))).all())
    assert len(refs) == 65 and refs["large-59"] == "ref-large-59"


def order_for(ref: str, order_id: str) -> Received:
    data = ErpOrderPlaced(order_id=order_id, customer_ref=ref, amount="10.00", currency="EUR", quantity=1, placed_at=AT)
    return Received(envelope=CloudEvent.wrap(data, source="/erp/sap"), data=data)


async def _stored(database) -> tuple[list[str | None], int]:
    async with database.sessions() as session:
        orders = list((await session.execute(select(Interaction.order_id))).scalars())
        still_parked = (await session.execute(select(func.count()).select_from(ParkedEvent))).scalar_one()
    return orders, still_parked


async def test_a_batch_releases_orders_parked_before_it_and_within_it(database, monkeypatch):
    # Parked by an earlier batch, before its customer existed.
    await apply_batch(database, Directory(), monkeypatch, [order_for("ref-a", "O-1")])
    assert await _stored(database) == ([], 1)
    # One batch: customer a (releasing O-1), an order for b not known yet (parked), then b itself.
    batch = [received(created("a")), order_for("ref-b", "O-2"), received(created("b")), received(created("c"))]
    await apply_batch(database, Directory(), monkeypatch, batch)
    orders, still_parked = await _stored(database)
    assert sorted(orders) == ["O-1", "O-2"] and still_parked == 0


def score(customer_id: str, tier: str, minutes: int = 0) -> Received:
    data = ScoreUpdated(
        customer_id=customer_id,
        previous=None,
        current=ScoreValues(churn_risk=0.2, health=0.8, value_tier=tier),
        model_version="v1",
        caused_by="e-0",
        computed_at=AT + timedelta(minutes=minutes),
    )
    return received(data)


async def test_a_batch_of_scores_costs_the_same_statements_whatever_its_size(database, monkeypatch):
    # Known customers, whose rows the scores update (and one the replica has not heard of yet).
    await apply_batch(database, Directory(), monkeypatch, [received(created(f"c-{i}")) for i in range(60)])
    sent_per_batch = []
    for size, tier in ((4, "gold"), (60, "silver")):
        events = [score(f"c-{i}", tier, size) for i in range(size)] + [score(f"new-{size}", tier, size)]
        with statements_sent(database.engine.sync_engine) as sent:
            await apply_batch(database, Directory(), monkeypatch, events)
        sent_per_batch.append(len(sent))
    assert sent_per_batch[0] == sent_per_batch[1]
    async with database.sessions() as session:
        tiers = dict((await session.execute(select(KnownCustomer.customer_id, KnownCustomer.scored_tier))).all())
    assert tiers["c-0"] == tiers["c-59"] == "silver" and tiers["new-4"] == "gold" and tiers["new-60"] == "silver"


async def test_of_a_customers_scores_in_one_batch_the_latest_holds_whatever_their_order(database, monkeypatch):
    events = [score("c-1", "gold", minutes=5), score("c-1", "bronze", minutes=1), score("c-2", "silver")]
    await apply_batch(database, Directory(), monkeypatch, events)
    async with database.sessions() as session:
        tiers = dict((await session.execute(select(KnownCustomer.customer_id, KnownCustomer.scored_tier))).all())
    assert tiers == {"c-1": "gold", "c-2": "silver"}


async def test_a_batch_of_new_customers_and_scores_reads_and_creates_their_replica_rows_once(database, monkeypatch):
    # Scores of customers the replica has not heard of, and the creations of others, in one poll: their
    # rows are read in one statement and the missing ones come back from their insert (no second read).
    events = [score(f"s-{i}", "gold") for i in range(5)] + [received(created(f"n-{i}")) for i in range(5)]
    with statements_sent(database.engine.sync_engine) as sent:
        await apply_batch(database, Directory(), monkeypatch, events)
    rows = [s.split(" WHERE")[0].split(" VALUES")[0] for s in sent if "known_customers" in s.split("\n")[0]]
    assert sum(s.startswith("SELECT known_customers") for s in rows) == 1
    assert sum(s.startswith("INSERT INTO known_customers") for s in rows) == 1
    async with database.sessions() as session:
        replica = dict((await session.execute(select(KnownCustomer.customer_id, KnownCustomer.external_ref))).all())
    assert len(replica) == 10 and replica["n-4"] == "ref-n-4" and replica["s-0"] is None
