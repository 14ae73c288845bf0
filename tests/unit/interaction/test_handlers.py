from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from contracts.customer import (
    CustomerCreated,
    CustomerErased,
    CustomerStatusChanged,
    CustomerUpdated,
)
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.interaction.handlers import HANDLERS
from services.interaction.interactions.models import Interaction, InteractionCreate
from services.interaction.interactions.service import record_interaction
from services.interaction.replica.directory import CustomerServiceUnavailable, CustomerSnapshot
from services.interaction.replica.models import KnownCustomer
from services.interaction.replica.service import apply_customer_created, apply_customer_updated
from tests.unit.interaction.conftest import SLA_HOURS, FakeCustomerService, created, received

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def handle(database: Database, *events) -> None:
    async with database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


async def replica(database: Database) -> list[KnownCustomer]:
    async with database.sessions() as session:
        return list((await session.execute(select(KnownCustomer))).scalars())


def status_changed(status: str, at: datetime, previous: str | None = None) -> CustomerStatusChanged:
    return CustomerStatusChanged(customer_id="c-1", previous_status=previous, status=status, changed_at=at)


async def test_customer_created_fills_the_replica(database):
    await handle(database, received(created("c-1", external_ref="ERP-1")))
    [row] = await replica(database)
    assert (row.customer_id, row.external_ref, row.status, row.version, row.erased) == (
        "c-1",
        "ERP-1",
        "active",
        1,
        False,
    )


async def test_customer_created_twice_with_different_event_ids_leaves_one_unchanged_row(database):
    await handle(database, received(created("c-1", external_ref="ERP-1"), "e-1"))
    await handle(database, received(created("c-1", external_ref="ERP-1"), "e-2"))
    [row] = await replica(database)
    assert (row.external_ref, row.status, row.version) == ("ERP-1", "active", 1)


async def test_an_update_for_an_unknown_customer_creates_the_row_and_a_late_created_does_not_undo_it(database):
    update = CustomerUpdated(customer_id="c-1", version=2, changed=["external_ref"], external_ref="ERP-2")
    await handle(database, received(update))
    [row] = await replica(database)
    assert (row.external_ref, row.version, row.status) == ("ERP-2", 2, None)

    await handle(database, received(created("c-1", external_ref="ERP-1")))
    [row] = await replica(database)
    assert (row.external_ref, row.version, row.status) == ("ERP-2", 2, "active")


async def test_an_older_update_is_ignored_and_a_listed_null_reference_clears_it(database):
    await handle(
        database,
        received(CustomerUpdated(customer_id="c-1", version=3, changed=["external_ref"], external_ref="ERP-3")),
    )
    await handle(
        database,
        received(CustomerUpdated(customer_id="c-1", version=2, changed=["external_ref"], external_ref="ERP-2")),
    )
    assert (await replica(database))[0].external_ref == "ERP-3"
    await handle(database, received(CustomerUpdated(customer_id="c-1", version=4, changed=["external_ref"])))
    assert (await replica(database))[0].external_ref is None


async def test_a_status_change_older_than_the_held_status_is_ignored(database):
    await handle(
        database,
        received(created("c-1")),
        received(status_changed("churned", T0 + timedelta(days=2), "active")),
        received(status_changed("active", T0 + timedelta(days=1), "prospect")),  # arrives late
    )
    [row] = await replica(database)
    assert row.status == "churned"


async def test_a_status_change_for_an_unknown_customer_creates_the_row(database):
    await handle(database, received(status_changed("won_back", T0)))
    [row] = await replica(database)
    assert (row.status, row.erased) == ("won_back", False)


async def test_erasure_marks_the_customer_and_blanks_the_text_of_its_interactions_only(database):
    await handle(database, received(created("c-1")), received(created("c-2")))
    async with database.transaction() as session:
        for customer_id in ("c-1", "c-2"):
            data = InteractionCreate(customer_id=customer_id, type="email", text="my address is ...")
            await record_interaction(
                session=session, data=data, sla_hours=SLA_HOURS, lookup=FakeCustomerService().fetch
            )

    erased = CustomerErased(customer_id="c-1", erased_at=T0 + timedelta(days=9))
    await handle(database, received(erased, "e-1"))
    await handle(database, received(erased, "e-2"))  # a second delivery changes nothing

    rows = {r.customer_id: r for r in await replica(database)}
    assert rows["c-1"].erased and not rows["c-2"].erased
    async with database.sessions() as session:
        texts = {
            row.customer_id: row.text
            for row in await session.execute(select(Interaction.customer_id, Interaction.text))
        }
        count = (await session.execute(select(func.count()).select_from(Interaction))).scalar_one()
    assert texts == {"c-1": None, "c-2": "my address is ..."}
    assert count == 2  # the interactions stay (for scoring); only their free text goes


async def test_erasure_is_final_whatever_arrives_after_it(database):
    await handle(
        database,
        received(CustomerErased(customer_id="c-1", erased_at=T0)),  # before anything else
        received(created("c-1")),
        received(status_changed("active", T0 + timedelta(days=1))),
    )
    [row] = await replica(database)
    assert row.erased


# ---- the external reference comes from the customer master, never from the event ----------------------------


class MasterWithReference:
    """The customer service's answer: c-1 at `version` with `ref` (or down)."""

    def __init__(self, ref: str | None, version: int = 1, down: bool = False) -> None:
        self.ref, self.version, self.down = ref, version, down
        self.asked: list[str] = []

    async def __call__(self, customer_id: str) -> CustomerSnapshot | None:
        self.asked.append(customer_id)
        if self.down:
            raise CustomerServiceUnavailable("connection refused")
        return CustomerSnapshot(customer_id=customer_id, status="active", external_ref=self.ref, version=self.version)


async def test_a_created_event_saying_there_is_a_reference_reads_it_from_the_customer_master(database):
    master = MasterWithReference("ERP-9")
    event = CustomerCreated(customer_id="c-1", kind="company", status="active", external_ref_set=True, created_at=T0)
    async with database.transaction() as session:
        await apply_customer_created(session=session, data=event, lookup=master)
    [row] = await replica(database)
    assert (master.asked, row.external_ref, row.version) == (["c-1"], "ERP-9", 1)


async def test_an_update_clearing_the_reference_clears_it_without_asking(database):
    master = MasterWithReference("ERP-9")
    async with database.transaction() as session:
        await apply_customer_created(
            session=session,
            data=CustomerCreated(
                customer_id="c-1", kind="company", status="active", external_ref_set=True, created_at=T0
            ),
            lookup=master,
        )
        cleared = CustomerUpdated(customer_id="c-1", version=2, changed=["external_ref"], external_ref_set=False)
        await apply_customer_updated(session=session, data=cleared, lookup=master)
    [row] = await replica(database)
    assert (master.asked, row.external_ref, row.version) == (["c-1"], None, 2)


async def test_an_unreachable_customer_master_is_a_transient_error_so_the_event_is_retried(database):
    event = CustomerCreated(customer_id="c-1", kind="company", status="active", external_ref_set=True, created_at=T0)
    async with database.transaction() as session:
        with pytest.raises(ConnectionError):
            await apply_customer_created(session=session, data=event, lookup=MasterWithReference(None, down=True))
