"""A consumer batch's locked rows in two statements: replicas, latest scores, unresolved alerts, consent, and
the catalog token.

Each was a statement of its own per batch (five round trips whatever the batch's size). Here, on PostgreSQL:

1. one statement locks the customers' replica rows, then their latest scores, then their unresolved alerts
   (the branches of a UNION ALL run in order, each key by key over the same sorted ids): the order the
   separate statements took them in, and the order of every other batch;
2. one statement reads them all, locked again (no wait: they are this transaction's), with consent and the
   catalog token, as a UNION ALL of tagged rows, each table's columns in a place of their own and NULL
   elsewhere, which the ORM loads back into objects of the four classes (an aliased entity per class over
   the union: its columns are found through their lineage, so every object is loaded, identity-mapped and
   typed as a plain `select` would).

Why not one statement: a statement reads with the snapshot it started with, also after waiting for a lock.
The separate statements each started after the previous table's locks were held, so they saw rows that the
transactions they waited for had added meanwhile (an alert that `POST /alerts/evaluate` raised while it held
the score's lock, a latest score another batch inserted). The second statement starts once every lock is
held, and locks any such row it now sees, so it sees at least what the separate statements saw.
SQLite has no row locks (a writer holds the whole database): there, the second statement alone.

The rows land in the same per-transaction states as the separate reads' (`Replicas`, `UnresolvedAlerts`,
`Consents`), and the token in the catalog's check.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import String, cast, func, literal_column, null, select, union_all
from sqlalchemy.orm import aliased

from servicekit.sql import KEYS, for_each_key, on_postgres
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.models import Alert
from services.retention.alerts.service import UnresolvedAlerts, store_new_alerts
from services.retention.catalog.models import CatalogVersion
from services.retention.catalog.service import checked
from services.retention.replica.models import Customer, CustomerScore
from services.retention.replica.service import Replicas, store_new_scores
from services.retention.touches.models import ConsentReplica
from services.retention.touches.service import Consents

# Tags, in lock order.
CUSTOMER, SCORE, ALERT, CONSENT, TOKEN = range(5)
_MODELS: tuple[Any, ...] = (Customer, CustomerScore, Alert, ConsentReplica)


@cache
def statement(postgres: bool) -> tuple[Any, tuple[Any, ...]]:
    """The statement and its four entities. Built once per process: building it costs more than running it."""
    tables = [m.__table__ for m in _MODELS]
    places = [(i, c) for i, t in enumerate(tables) for c in t.c]

    def branch(tag: int, rows: Any) -> Any:
        own = {c.name: c for c in rows.selected_columns} if rows is not None else {}
        columns: list[Any] = [literal_column(str(tag)).label("tag")]
        for k, (i, c) in enumerate(places):
            columns.append((own[c.name] if i == tag else cast(null(), c.type)).label(f"c{k}"))
        if rows is None:
            return select(*columns, CatalogVersion.token.label("token"))  # type: ignore[attr-defined]
        # The same FROM (on PostgreSQL the keys joined to the per-key subquery), other columns.
        return rows.with_only_columns(*columns, cast(null(), String).label("token"), maintain_column_froms=True)

    def locked(table: Any, *where: Any, lock: bool = True) -> Any:
        query = select(*table.c).where(*where)
        return for_each_key(query.with_for_update() if lock else query, table.c.customer_id, postgres=postgres)

    customers, scores, alerts, consents = tables
    union = union_all(
        branch(CUSTOMER, locked(customers)),
        branch(SCORE, locked(scores)),
        branch(ALERT, locked(alerts, alerts.c.open_slot.is_not(None))),
        branch(CONSENT, locked(consents, lock=False)),
        branch(TOKEN, None),
    ).subquery("batch_rows")
    entities = tuple(aliased(m, union) for m in _MODELS)
    return select(union.c.tag, *entities, union.c.token), entities


@cache
def lock_statement() -> Any:
    """PostgreSQL: lock the customers' replicas, then latest scores, then unresolved alerts; returns a count."""
    customers, scores, alerts, _ = (m.__table__ for m in _MODELS)

    def locked(table: Any, *where: Any) -> Any:
        rows = for_each_key(select(*table.c).where(*where).with_for_update(), table.c.customer_id, postgres=True)
        return rows.with_only_columns(literal_column("1").label("one"), maintain_column_froms=True)

    union = union_all(locked(customers), locked(scores), locked(alerts, alerts.c.open_slot.is_not(None)))
    return select(func.count()).select_from(union.subquery("locked"))


async def lock_and_load(uow: UnitOfWork, ids: Sequence[str]) -> None:
    """Lock and load the rows of these customers (sorted, each once) that this transaction has not loaded yet,
    and check the catalog's token: two statements on PostgreSQL, one on SQLite."""
    replicas = uow.state(Replicas)
    unresolved = uow.state(UnresolvedAlerts).by_customer
    consents = uow.state(Consents).replicas
    fresh = [
        {i for i in ids if i not in loaded} for loaded in (replicas.customers, replicas.scores, unresolved, consents)
    ]
    store_new_scores(uow.session)  # an earlier unit of work's, in this transaction
    store_new_alerts(uow.session)
    postgres = on_postgres(uow.session)
    query, _ = statement(postgres)
    keys = [i for i in ids if any(i in f for f in fresh)]
    if postgres and keys:
        await uow.session.execute(lock_statement(), {KEYS: keys})  # every wait happens here (see the top)
    found: tuple[dict[str, Any], ...] = ({}, {}, {}, {})
    alerts: dict[str, list[Alert]] = {}
    token: str | None = None
    for tag, customer, score, alert, consent, row_token in await uow.session.execute(query, {KEYS: keys}):
        if tag == ALERT:
            alerts.setdefault(alert.customer_id, []).append(alert)
        elif tag == TOKEN:
            token = row_token
        else:
            row: Any = (customer, score, None, consent)[tag]
            found[tag][row.customer_id] = row
    customers, scores, _, consent_rows = found
    replicas.customers.update({i: customers.get(i) for i in fresh[CUSTOMER]})
    replicas.scores.update({i: scores.get(i) for i in fresh[SCORE]})
    unresolved.update({i: alerts.get(i, []) for i in fresh[ALERT]})
    consents.update({i: consent_rows.get(i) for i in fresh[CONSENT]})
    if token is not None:
        await checked(uow, token)
