from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from contracts.common import InteractionType
from servicekit.db import Database
from servicekit.problems import Problem
from servicekit.tables import OUTBOX
from services.interaction.interactions.models import Interaction, InteractionCreate
from services.interaction.interactions.service import list_customer_interactions, record_interaction
from services.interaction.replica.models import KnownCustomer
from tests.unit.interaction.conftest import SLA_HOURS, FakeCustomerService


async def record(database: Database, lookup: FakeCustomerService, **fields: Any) -> tuple[Interaction, bool]:
    data = InteractionCreate(**{"customer_id": "c-1", **fields})
    async with database.transaction() as session:
        return await record_interaction(session=session, data=data, sla_hours=SLA_HOURS, lookup=lookup.fetch)


async def outbox(database: Database) -> list[dict[str, Any]]:
    async with database.sessions() as session:
        rows = (
            await session.execute(select(OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.payload).order_by(OUTBOX.c.id))
        ).all()
    return [{"topic": r.topic, "key": r.key, **orjson.loads(r.payload)} for r in rows]


async def count_interactions(database: Database) -> int:
    async with database.sessions() as session:
        return (await session.execute(select(func.count()).select_from(Interaction))).scalar_one()


COMPLAINT = {"type": "complaint", "severity": "high", "category": "delivery", "text": "Two weeks late."}


async def test_a_complaint_is_stored_once_with_its_recorded_and_opened_events_in_the_outbox(database):
    opened = datetime.now(UTC) - timedelta(hours=1)
    interaction, created = await record(database, FakeCustomerService("c-1"), occurred_at=opened, **COMPLAINT)

    assert created
    assert await count_interactions(database) == 1
    assert interaction.complaint_status == "open"
    assert interaction.due_at == opened + timedelta(hours=24)
    events = await outbox(database)
    assert [e["type"] for e in events] == ["interaction.recorded", "complaint.opened"]
    assert {(e["topic"], e["key"], e["subject"]) for e in events} == {("crm.interaction.v1", "c-1", "c-1")}
    recorded, complaint = (e["data"] for e in events)
    assert recorded["interaction_id"] == interaction.id
    assert (recorded["type"], recorded["severity"], recorded["category"]) == ("complaint", "high", "delivery")
    assert "text" not in recorded  # free text stays in this service's database, out of the Kafka log
    assert complaint["complaint_id"] == interaction.id
    assert datetime.fromisoformat(complaint["opened_at"]) == opened
    assert datetime.fromisoformat(complaint["due_at"]) == opened + timedelta(hours=24)


async def test_a_repeat_with_the_same_external_id_returns_the_stored_interaction_and_adds_nothing(database):
    customers = FakeCustomerService("c-1")
    first, created = await record(database, customers, external_id="ticket-7", **COMPLAINT)
    again, created_again = await record(database, customers, external_id="ticket-7", **{**COMPLAINT, "text": "retry"})

    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert again.text == "Two weeks late."
    assert await count_interactions(database) == 1
    assert len(await outbox(database)) == 2


async def test_an_external_id_reused_for_another_customer_is_a_conflict(database):
    customers = FakeCustomerService("c-1", "c-2")
    await record(database, customers, external_id="ticket-7", **COMPLAINT)
    with pytest.raises(Problem) as caught:
        await record(database, customers, customer_id="c-2", external_id="ticket-7", **COMPLAINT)
    assert caught.value.status == 409
    assert caught.value.errors[0]["field"] == "external_id"


async def test_an_external_id_reused_for_another_customer_the_replica_knows_is_a_conflict(database):
    customers = FakeCustomerService("c-1", "c-2")
    await record(database, customers, customer_id="c-2", **COMPLAINT)  # the replica now knows c-2
    await record(database, customers, external_id="ticket-7", **COMPLAINT)
    with pytest.raises(Problem) as caught:
        await record(database, customers, customer_id="c-2", external_id="ticket-7", **COMPLAINT)
    assert caught.value.status == 409
    assert await count_interactions(database) == 2


async def test_a_post_for_a_customer_the_replica_knows_inserts_without_first_reading_its_external_id(database):
    customers = FakeCustomerService("c-1")
    await record(database, customers, **COMPLAINT)  # the replica now knows c-1
    statements: list[str] = []

    def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()).upper())

    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    await record(database, customers, external_id="ticket-8", **COMPLAINT)
    sa_event.remove(database.engine.sync_engine, "before_cursor_execute", remember)

    reads_of_interactions = [s for s in statements if s.startswith("SELECT") and "FROM INTERACTIONS" in s]
    assert reads_of_interactions == []
    assert [s.split(" (")[0] for s in statements if s.startswith("INSERT")] == [
        "INSERT INTO INTERACTIONS",
        "INSERT INTO OUTBOX",
    ]


async def test_a_survey_answer_is_recorded_with_a_survey_answered_event(database):
    interaction, _ = await record(database, FakeCustomerService("c-1"), type="survey", survey="nps", score=3)
    events = await outbox(database)
    assert [e["type"] for e in events] == ["interaction.recorded", "survey.answered"]
    assert events[1]["data"]["interaction_id"] == interaction.id
    assert (events[1]["data"]["survey"], events[1]["data"]["score"]) == ("nps", 3)
    assert interaction.complaint_status is None and interaction.due_at is None
    assert events[1]["data"]["dimension"] is None  # no category: the survey named no dimension


@pytest.mark.parametrize(("category", "dimension"), [("product", "product"), ("Support", "service"), ("misc", None)])
async def test_a_survey_names_its_dimension_in_its_category(database, category: str, dimension: str | None):
    await record(database, FakeCustomerService("c-1"), type="survey", survey="csat", score=4, category=category)
    events = await outbox(database)
    assert events[1]["data"]["dimension"] == dimension


async def test_a_purchase_emits_only_interaction_recorded_with_its_amount(database):
    await record(database, FakeCustomerService("c-1"), type="purchase", amount="19.90", currency="EUR", quantity=2)
    [event] = await outbox(database)
    assert event["type"] == "interaction.recorded"
    assert (event["data"]["amount"], event["data"]["currency"], event["data"]["quantity"]) == ("19.90", "EUR", 2)


async def test_a_customer_missing_from_the_replica_is_asked_for_once_and_then_known(database):
    customers = FakeCustomerService("c-1")
    await record(database, customers, type="call")
    await record(database, customers, type="email")

    assert customers.asked == ["c-1"]
    async with database.sessions() as session:
        known = await session.get(KnownCustomer, "c-1")
    assert known is not None and (known.status, known.version, known.erased) == ("active", 1, False)


async def test_an_unknown_customer_is_a_404_naming_customer_id_and_nothing_is_stored(database):
    with pytest.raises(Problem) as caught:
        await record(database, FakeCustomerService(), **COMPLAINT)
    assert caught.value.status == 404
    assert caught.value.errors == [{"field": "customer_id", "message": "unknown customer"}]
    assert await count_interactions(database) == 0
    assert await outbox(database) == []


async def test_an_unreachable_customer_service_is_a_503_with_retry_after(database):
    with pytest.raises(Problem) as caught:
        await record(database, FakeCustomerService("c-1", down=True), **COMPLAINT)
    assert caught.value.status == 503
    assert caught.value.headers == {"Retry-After": "2"}


async def test_a_customer_already_in_the_replica_needs_no_customer_service(database):
    async with database.transaction() as session:
        session.add(KnownCustomer(customer_id="c-1", status="active", version=1))
    _, created = await record(database, FakeCustomerService(down=True), **COMPLAINT)
    assert created


async def test_no_interaction_can_be_recorded_for_an_erased_customer(database):
    async with database.transaction() as session:
        session.add(KnownCustomer(customer_id="c-1", version=1, erased=True))
    with pytest.raises(Problem) as caught:
        await record(database, FakeCustomerService("c-1"), **COMPLAINT)
    assert caught.value.status == 410
    assert caught.value.errors[0]["field"] == "customer_id"


async def test_the_timeline_is_newest_first_filtered_by_type_and_period_and_paged(database):
    customers = FakeCustomerService("c-1", "c-2")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for day, kind in enumerate(["purchase", "call", "complaint", "call", "email"]):
        extra = {"amount": "10", "currency": "EUR"} if kind == "purchase" else {}
        if kind == "complaint":
            extra = {"severity": "low"}
        await record(database, customers, type=kind, occurred_at=start + timedelta(days=day), **extra)
    await record(database, customers, customer_id="c-2", type="call", occurred_at=start)

    async with database.sessions() as session:
        everything, total = await list_customer_interactions(session=session, customer_id="c-1")
        calls, calls_total = await list_customer_interactions(
            session=session, customer_id="c-1", types=[InteractionType.call]
        )
        period, _ = await list_customer_interactions(
            session=session, customer_id="c-1", since=start + timedelta(days=1), until=start + timedelta(days=3)
        )
        page, paged_total = await list_customer_interactions(session=session, customer_id="c-1", limit=2, offset=2)
    assert total == 5
    assert [i.type for i in everything] == ["email", "call", "complaint", "call", "purchase"]
    assert (calls_total, [i.occurred_at.day for i in calls]) == (2, [4, 2])
    assert [i.type for i in period] == ["complaint", "call"]  # [since, until)
    assert (paged_total, [i.type for i in page]) == (5, ["complaint", "call"])
