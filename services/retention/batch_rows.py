"""A consumer batch's rows in two statements: the batch's signals stored; replicas, latest scores, unresolved
alerts and read-model facts locked; consent, churns, the score history, the read model's stored event ids,
who waits, and the catalog token read.

Each was a statement of its own per batch (eight round trips whatever the batch's size). Here, on PostgreSQL:

1. one statement claims the batch's events in the inbox (the consumer's claim, handed over by servicekit's
   BatchApplier to this ClaimingHook: `claim_and_preload`), stores the claimed events' signals (INSERT ..
   ON CONFLICT DO NOTHING RETURNING, data-modifying CTEs, the signals' reading the claim's) and locks the
   customers' replica rows, then their latest scores, then their unresolved alerts, then the customer_facts
   rows the batch's events change (the branches of a UNION ALL run in order, each key by
   key over sorted ids): the order the separate statements took them in, and the order of every other batch;
2. one statement reads them all, locked again (no wait: they are this transaction's), with consent, the
   churns, the score history the batch's new scores need (see `lock_and_load`), which of the batch's event
   ids the read model holds, which customers have a registered wait and the catalog token, as a UNION ALL
   of tagged rows, each table's columns in a place of their own and NULL elsewhere, which the ORM loads
   back into objects of the six classes (an aliased entity per class over the union: its columns are found
   through their lineage, so every object is loaded, identity-mapped and typed as a plain `select` would).

Why not one statement: a statement reads with the snapshot it started with, also after waiting for a lock.
The separate statements each started after the previous table's locks were held, so they saw rows that the
transactions they waited for had added meanwhile (an alert that `POST /alerts/evaluate` raised while it held
the score's lock, a latest score another batch inserted). The second statement starts once every lock is
held, and locks any such row it now sees, so it sees at least what the separate statements saw. The signals'
insert reads nothing with the snapshot: a conflict is checked against the latest committed row, and the inbox
claim before it has already waited for any other transaction applying the same event. The claim is the
UNION ALL's first branch, so it runs (and waits) before any lock is taken, as when it was a statement of its
own; the locks are those of every event given, claimed or not (a redelivered event's customer's rows too, in
the same order), and everything after them is for the claimed events alone.
SQLite has no row locks (a writer holds the whole database): there, the claim, the signals' insert and the
second statement.

The rows land in the same per-transaction states as the separate reads' (`Replicas`, `UnresolvedAlerts`,
`Consents`, `ReadModelBatch`, `WaitingCustomers`, `BatchSignals`), and the token in the catalog's check.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import String, cast, func, literal_column, null, select, union_all
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import aliased

from servicekit.events.envelope import Received
from servicekit.inbox import Claim, batch_customer_ids, claimed_events
from servicekit.sql import IN_CHUNK, KEYS, column_arrays, for_each_key, on_postgres
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.models import Alert
from services.retention.alerts.service import UnresolvedAlerts, store_new_alerts
from services.retention.catalog import service as catalog_service
from services.retention.catalog.models import CatalogVersion
from services.retention.catalog.service import checked
from services.retention.replica.models import Customer, CustomerScore
from services.retention.replica.service import Replicas, store_new_scores
from services.retention.reports import batch as read_model
from services.retention.reports.models import ChurnFact, CustomerFact, FactEvent
from services.retention.signals import service as signals
from services.retention.signals import window
from services.retention.touches.models import ConsentReplica
from services.retention.touches.service import Consents
from services.retention.waits import handlers as waits
from services.retention.waits.models import EnrolmentWake

# Tags: the rows of the six classes, in lock order, the score history's, then the rows that carry one value.
CUSTOMER, SCORE, ALERT, CONSENT, FACTS, CHURN, HISTORY, TOKEN, STORED, WAITING = range(10)
CLAIMED = -1  # the first statement's rows: an event id the inbox claim returned
_MODELS: tuple[Any, ...] = (Customer, CustomerScore, Alert, ConsentReplica, CustomerFact, ChurnFact)
# The bound keys of each branch (KEYS: the batch's customers not loaded yet), and the history's window.
FACT_KEYS, CHURN_KEYS, EVENT_KEYS, WAIT_KEYS = "fact_keys", "churn_keys", "event_keys", "wait_keys"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NO_HISTORY = signals.HistoryRequest(_EPOCH, _EPOCH, (), _EPOCH, _EPOCH, ())  # no customers: reads nothing
HISTORY_NAMES: window.Names = (
    "history_keys",
    "history_since",
    "history_until",
    "history_edge",
    "history_first",
    "history_own",
)


def _locked(table: Any, *where: Any, postgres: bool, lock: bool = True, param: str = KEYS) -> Any:
    query = select(*table.c).where(*where)
    return for_each_key(query.with_for_update() if lock else query, table.c.customer_id, postgres=postgres, param=param)


@cache
def statement(postgres: bool) -> tuple[Any, tuple[Any, ...]]:
    """The statement and its six entities. Built once per process: building it costs more than running it."""
    tables = [m.__table__ for m in _MODELS]
    history = window.reduced_statement(postgres, HISTORY_NAMES)
    places = [(i, c) for i, t in enumerate(tables) for c in t.c] + [(HISTORY, c) for c in history.selected_columns]

    def branch(tag: int, rows: Any) -> Any:
        own = {c.name: c for c in rows.selected_columns} if rows is not None else {}
        columns: list[Any] = [literal_column(str(tag)).label("tag")]
        for k, (i, c) in enumerate(places):
            columns.append((own[c.name] if i == tag else cast(null(), c.type)).label(f"c{k}"))
        if rows is None:
            return select(*columns, CatalogVersion.token.label("value"))  # type: ignore[attr-defined]
        value = next(iter(rows.selected_columns)) if tag > TOKEN else cast(null(), String)
        # The same FROM (on PostgreSQL the keys joined to the per-key subquery), other columns.
        return rows.with_only_columns(*columns, value.label("value"), maintain_column_froms=True)

    customers, scores, alerts, consents, facts, churns = tables
    events, wakes = FactEvent.__table__.c, EnrolmentWake.__table__.c  # type: ignore[attr-defined]
    stored = for_each_key(select(events.event_id), events.event_id, postgres=postgres, param=EVENT_KEYS)
    waits_of = select(wakes.customer_id).limit(1) if postgres else select(wakes.customer_id)  # one row a key
    waiting = for_each_key(waits_of, wakes.customer_id, postgres=postgres, param=WAIT_KEYS)
    union = union_all(
        branch(CUSTOMER, _locked(customers, postgres=postgres)),
        branch(SCORE, _locked(scores, postgres=postgres)),
        branch(ALERT, _locked(alerts, alerts.c.open_slot.is_not(None), postgres=postgres)),
        branch(CONSENT, _locked(consents, postgres=postgres, lock=False)),
        branch(FACTS, _locked(facts, postgres=postgres, param=FACT_KEYS)),
        branch(CHURN, _locked(churns, postgres=postgres, lock=False, param=CHURN_KEYS)),
        branch(HISTORY, history),
        branch(TOKEN, None),
        branch(STORED, stored),
        branch(WAITING, waiting),
    ).subquery("batch_rows")
    entities = tuple(aliased(m, union) for m in _MODELS)
    history_columns = [union.c[f"c{k}"] for k, (i, _) in enumerate(places) if i == HISTORY]
    return select(union.c.tag, *entities, union.c.value, *history_columns), entities


@cache
def lock_statement(with_signals: bool, claim: Any = None) -> Any:
    """PostgreSQL: claim the batch's events in the inbox (claim: the applier's claim statement, bound with
    its own arrays), store the signals bound as arrays (with_signals; with a claim, only the claimed events'),
    lock the customers' replicas, then latest scores, then unresolved alerts, then the facts rows bound as
    FACT_KEYS. Rows: each event id claimed (locked = CLAIMED), each event id stored (0), and one row
    counting the rows locked. The branches run in order: the claim's waits come first, as when it was a
    statement of its own."""
    customers, scores, alerts, _, facts, _ = (m.__table__ for m in _MODELS)

    def locked(table: Any, *where: Any, param: str = KEYS) -> Any:
        rows = _locked(table, *where, postgres=True, param=param)
        return rows.with_only_columns(literal_column("1").label("one"), maintain_column_froms=True)

    union = union_all(
        locked(customers),
        locked(scores),
        locked(alerts, alerts.c.open_slot.is_not(None)),
        locked(facts, param=FACT_KEYS),
    ).subquery("locked")
    count = select(cast(null(), String).label("event_id"), func.count().label("locked")).select_from(union)
    branches: list[Any] = []
    claimed = None
    if claim is not None:
        claimed = claim.cte("claimed")
        branches.append(select(claimed.c.event_id, literal_column(str(CLAIMED)).label("locked")))
    if with_signals:
        stored = signals.store_statement(True) if claimed is None else _claimed_signals(claimed)
        branches.append(select(stored.cte("stored").c.event_id, literal_column("0").label("locked")))
    return union_all(*branches, count) if branches else count


def _claimed_signals(claimed: Any) -> Any:
    """signals.store_statement on PostgreSQL, for the rows of the claimed events only (an event the claim
    skipped was handled before, or is another transaction's: its signal is not this batch's to store)."""
    rows = signals.store_statement(True).select
    only = rows.where(rows.selected_columns[0].in_(select(claimed.c.event_id)))
    insert = postgresql.insert(signals.SIGNALS).from_select(list(signals.SIGNAL_COLUMNS), only)
    return insert.on_conflict_do_nothing(index_elements=[signals.SIGNALS.c.event_id]).returning(
        signals.SIGNALS.c.event_id
    )


async def preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """The consumer's batch preload: store the batch's signals, lock and load the rows its events will touch,
    in two statements (see the top); then the score history its new scores need."""
    await lock_and_load(uow, sorted(batch_customer_ids(events)), events)


async def claim_and_preload(uow: UnitOfWork, events: Sequence[Received[Any]], claim: Claim) -> set[str]:
    """The preload as a ClaimingHook: on PostgreSQL the batch's inbox claim rides in its first statement (one
    round trip fewer). That statement locks the rows of every event given, claimed or not (a redelivered
    event's customer's rows too, in the same order as any batch); everything after it is for the claimed
    events alone, as the preload of those events."""
    if not on_postgres(uow.session):
        claimed = await claim.run(uow.session)
        await preload(uow, claimed_events(events, claimed))
        return claimed
    return await lock_and_load(uow, sorted(batch_customer_ids(events)), events, claim)


async def lock_and_load(
    uow: UnitOfWork, ids: Sequence[str], events: Sequence[Received[Any]] = (), claim: Claim | None = None
) -> set[str]:
    """Lock and load the rows of these customers (sorted, each once) that this transaction has not loaded yet,
    check the catalog's token, and store and load what the events need: two statements on PostgreSQL. With a
    claim (PostgreSQL), claim the events first in the same first statement, and load for the claimed ones:
    what is claimed."""
    replicas = uow.state(Replicas)
    unresolved = uow.state(UnresolvedAlerts).by_customer
    consents = uow.state(Consents).replicas
    loaded_sets = (replicas.customers, replicas.scores, unresolved, consents)
    fresh = [{i for i in ids if i not in loaded} for loaded in loaded_sets]
    model = read_model.wanted(uow, events)
    watched = signals.watched(events)
    store_new_scores(uow.session)  # an earlier unit of work's, in this transaction
    store_new_alerts(uow.session)
    if model.facts:
        read_model.store_new_facts(uow.session)
    session, postgres = uow.session, on_postgres(uow.session)
    keys = [i for i in ids if any(i in f for f in fresh)]
    stored: set[str] | None = None
    claimed: set[str] = set()
    if postgres and (claim is not None or keys or model.facts or watched):  # every wait happens here (see the top)
        folded = bool(watched) and len(watched) <= IN_CHUNK
        params: dict[str, Any] = {KEYS: keys, FACT_KEYS: model.facts}
        if folded:
            params |= column_arrays(signals.SIGNALS, signals.SIGNAL_COLUMNS, [signals.signal_row(e) for e in watched])
            stored = set()
        if claim is not None:
            params |= claim.params
        returned: list[str] = []
        for event_id, locked in await session.execute(lock_statement(folded, claim and claim.statement), params):
            if locked == CLAIMED and event_id is not None:
                returned.append(event_id)
            elif event_id is not None and stored is not None:
                stored.add(event_id)
        if claim is not None:
            claimed = claim.claimed(returned)
            # From here on, the claimed events alone (their rows are locked: a subset of what was).
            events = claimed_events(events, claimed)
            ids = sorted(batch_customer_ids(events))
            fresh = [{i for i in ids if i not in loaded} for loaded in loaded_sets]
            model, watched = read_model.wanted(uow, events), signals.watched(events)
            keys = [i for i in ids if any(i in f for f in fresh)]
    waiting = waits.wanted(events)
    if stored is None and watched:
        stored = await signals.store(uow, watched)  # before the read: the score history counts them
    stored = stored or set()
    # The history the new scores need, guessed with the catalog as last read: signals.loaded uses the rows
    # only if the catalog this transaction checks makes the same request (else it reads them itself).
    last = catalog_service.last_read()
    pending = signals.pending(uow)  # an earlier preload's in this transaction: never folded
    request = signals.history_request(watched, stored, last.rules, pending) if last is not None else None
    found: tuple[set[str], list[Any]] = (set(), [])
    if ids or model or waiting or request:
        found = await _read(uow, keys, model, waiting, request, fresh)
    waits.loaded(uow, found[0])
    await signals.loaded(uow, watched, stored, (request, found[1]))
    return claimed


async def _read(
    uow: UnitOfWork,
    keys: list[str],
    model: read_model.Wanted,
    waiting: list[str],
    request: signals.HistoryRequest | None,
    fresh: list[set[str]],
) -> tuple[set[str], list[Any]]:
    """The second statement: every row into its state; the customers that wait, of `waiting`, and the rows
    of the score history `request`ed."""
    query, _ = statement(on_postgres(uow.session))
    params = {KEYS: keys, FACT_KEYS: model.facts, CHURN_KEYS: model.churns, EVENT_KEYS: model.event_ids}
    params |= {WAIT_KEYS: waiting} | (request or NO_HISTORY).params(HISTORY_NAMES)
    found: tuple[dict[str, Any], ...] = ({}, {}, {}, {}, {})
    alerts: dict[str, list[Alert]] = {}
    churns: list[ChurnFact] = []
    history: list[Any] = []
    values: tuple[set[str], set[str]] = (set(), set())
    token: str | None = None
    for tag, customer, score, alert, consent, facts, churn, value, *signal in await uow.session.execute(query, params):
        if tag == ALERT:
            alerts.setdefault(alert.customer_id, []).append(alert)
        elif tag == CHURN:
            churns.append(churn)
        elif tag == HISTORY:
            history.append(signal)
        elif tag == TOKEN:
            token = value
        elif tag > TOKEN:
            values[tag - STORED].add(value)
        else:
            row: Any = (customer, score, None, consent, facts)[tag]
            found[tag][row.customer_id] = row
    replicas = uow.state(Replicas)
    replicas.customers.update({i: found[CUSTOMER].get(i) for i in fresh[CUSTOMER]})
    replicas.scores.update({i: found[SCORE].get(i) for i in fresh[SCORE]})
    uow.state(UnresolvedAlerts).by_customer.update({i: alerts.get(i, []) for i in fresh[ALERT]})
    uow.state(Consents).replicas.update({i: found[CONSENT].get(i) for i in fresh[CONSENT]})
    read_model.loaded(uow, model, values[0], found[FACTS].values(), churns)
    if token is not None:
        await checked(uow, token)
    return values[1], history
