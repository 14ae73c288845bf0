"""The retention batch preload's separate reads, one statement each, as they were before services/retention/
batch_rows.py folded them: the reference its tests compare the folded statements with (same rows, same
per-transaction states). Not used by the service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from servicekit.events.envelope import Received
from servicekit.inbox import batch_customer_ids
from servicekit.sql import KEYS, for_each_key, on_postgres
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.models import Alert
from services.retention.alerts.service import UnresolvedAlerts, store_new_alerts
from services.retention.catalog.service import catalog
from services.retention.replica.models import Customer, CustomerScore
from services.retention.replica.service import Replicas, store_new_scores
from services.retention.reports import batch as read_model
from services.retention.reports.models import ChurnFact, CustomerFact, FactEvent
from services.retention.signals import service as signals
from services.retention.touches import service as touches
from services.retention.touches.models import ConsentReplica
from services.retention.waits import handlers as waits
from services.retention.waits.handlers import WaitingCustomers
from services.retention.waits.models import EnrolmentWake


async def lock_replicas(uow: UnitOfWork, ids: Sequence[str]) -> None:
    """Lock and load the customers' replicas, then their latest scores, not loaded yet (replica.lock)."""
    state = uow.state(Replicas)
    store_new_scores(uow.session)
    postgres = on_postgres(uow.session)
    for model, loaded in ((Customer, state.customers), (CustomerScore, state.scores)):
        fresh = [i for i in ids if i not in loaded]
        if fresh:
            query = for_each_key(select(model).with_for_update(), model.customer_id, postgres=postgres)
            found = {row.customer_id: row for row in (await uow.session.execute(query, {KEYS: fresh})).scalars()}
            loaded.update({i: found.get(i) for i in fresh})


async def lock_unresolved(uow: UnitOfWork, ids: Sequence[str]) -> None:
    """Lock and load the customers' unresolved alerts not loaded yet (alerts.lock_unresolved)."""
    known = uow.state(UnresolvedAlerts).by_customer
    fresh = [i for i in ids if i not in known]
    if fresh:
        for i in fresh:
            known[i] = []
        store_new_alerts(uow.session)
        query = select(Alert).where(Alert.open_slot.is_not(None)).with_for_update()
        query = for_each_key(query, Alert.customer_id, postgres=on_postgres(uow.session))
        for alert in (await uow.session.execute(query, {KEYS: fresh})).scalars():
            known[alert.customer_id].append(alert)


async def separately(uow: UnitOfWork, ids: list[str]) -> None:
    """The reads batch_rows' first fold replaced, in their order: token, replicas, alerts, consent."""
    await catalog(uow)
    await lock_replicas(uow, ids)
    await lock_unresolved(uow, ids)
    await consents_preload(uow, ids)


async def consents_preload(uow: UnitOfWork, ids: Sequence[str]) -> None:
    """Read the customers' consent replicas not read yet (touches.preload)."""
    replicas = uow.state(touches.Consents).replicas
    fresh = [i for i in ids if i not in replicas]
    if fresh:
        postgres = on_postgres(uow.session)
        query = for_each_key(select(ConsentReplica), ConsentReplica.customer_id, postgres=postgres)
        found = {row.customer_id: row for row in (await uow.session.execute(query, {KEYS: fresh})).scalars()}
        replicas.update({i: found.get(i) for i in fresh})


def _by_key(model: Any, key: str, postgres: bool, lock: bool) -> Any:
    column = getattr(model, key)
    query = select(column) if model is FactEvent else select(model)
    return for_each_key(query.with_for_update() if lock else query, column, postgres=postgres)


async def read_model_preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """The read model's preload: stored event ids, locked facts, churns, one statement each."""
    state = uow.state(read_model.ReadModelBatch)
    session, postgres = uow.session, on_postgres(uow.session)
    wanted = read_model.wanted(uow, events)
    if wanted.event_ids:
        query = _by_key(FactEvent, "event_id", postgres, False)
        state.stored.update(row[0] for row in await session.execute(query, {KEYS: wanted.event_ids}))
        state.checked.update(wanted.event_ids)
    if wanted.facts:
        read_model.store_new_facts(session)
        rows = await session.execute(_by_key(CustomerFact, "customer_id", postgres, True), {KEYS: wanted.facts})
        found = {row.customer_id: row for row in rows.scalars()}
        state.facts.update({i: found.get(i) for i in wanted.facts})
    if wanted.churns:
        rows = await session.execute(_by_key(ChurnFact, "customer_id", postgres, False), {KEYS: wanted.churns})
        for i in wanted.churns:
            state.churns[i] = []
        for churn in rows.scalars():
            state.churns[churn.customer_id].append(churn)


async def waits_preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """Which of the customers of the batch's waking events have a registered wait, one statement."""
    customers = waits.wanted(events)
    waiting: set[str] = set()
    if customers:
        column = EnrolmentWake.customer_id
        query = for_each_key(select(column).distinct(), column, postgres=on_postgres(uow.session))
        waiting = {row[0] for row in await uow.session.execute(query, {KEYS: customers})}
    uow.state(WaitingCustomers).ids = waiting


async def preload_separately(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """The whole batch preload as it was: the first fold's reads, the signals' insert and their history read,
    the read model's three reads, the waits' read."""
    ids = sorted(batch_customer_ids(events))
    if ids:
        await separately(uow, ids)
    watched = signals.watched(events)
    if watched:
        await signals.loaded(uow, watched, await signals.store(uow, watched))
    await read_model_preload(uow, events)
    await waits_preload(uow, events)
