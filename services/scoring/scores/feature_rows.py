"""The customer_features rows of a consumer transaction, as plain dicts of column values.

A batch reads its customers' rows in one query (preload), builds each event on the row as the batch left it,
and writes them just before commit: the changed rows in one UPDATE (servicekit.sql.update_rows, each row
only its changed columns), the new ones in one INSERT. Plain rows, not ORM objects: loading a batch's
rows (about 60 of 38 columns at the platform's poll sizes) into the identity map and writing each change
back through set_committed_value was a visible share of the scoring consumer's CPU, and nothing else in
the transaction reads these rows through the ORM. The silent-customer sweep and the model-change rescoring
read features rows in transactions of their own and keep the ORM.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from contracts.scoring import ScoreValues
from servicekit.db import hold_until_commit, insert_rows
from servicekit.events.envelope import Received
from servicekit.inbox import batch_customer_ids
from servicekit.sql import KEYS, chunks, for_each_key, on_postgres, update_rows
from servicekit.unit_of_work import UnitOfWork
from services.scoring.scores import features, write_behind
from services.scoring.scores.features import FeatureState
from services.scoring.scores.models import CurrentScore, CustomerFeatures

TABLE: Table = CustomerFeatures.__table__  # type: ignore[attr-defined]
COLUMNS = tuple(c.name for c in TABLE.columns)
Row = dict[str, Any]
_NEW = "scoring.features:new"
_CHANGED = "scoring.features:changed"


@dataclass
class FeatureRows:
    """The features rows this transaction has read or made (a consumer batch's events build on each other),
    the customer ids a preload found without one, and which rows are new (inserted at commit)."""

    rows: dict[str, Row] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    new: set[str] = field(default_factory=set)


def new_features_row(customer_id: str) -> CustomerFeatures:
    # Every default-factory column given explicitly: SQLModel's own defaults cost more CPU per row than the
    # rest of the row (pydantic inspects each factory's signature on every construction).
    return CustomerFeatures(
        customer_id=customer_id,
        attributes={},
        recent_purchases=[],
        purchase_days={},
        recent_complaints=[],
        open_complaint_ids={},
        overdue_complaint_ids=[],
        closed_complaint_ids=[],
        seen_ids=[],
        updated_at=datetime.now(UTC),
    )


@cache
def _defaults() -> Row:
    """A new row's column values (the model's defaults), built once."""
    template = new_features_row("")
    return {name: getattr(template, name) for name in COLUMNS}


def _fresh(value: Any) -> Any:
    """A default's value for one row: its own container, so rows never share one (the defaults' containers
    are empty, and a shallow copy is a tenth of deepcopy's cost: an import creates a row per customer)."""
    if isinstance(value, list | dict):
        return copy.deepcopy(value) if value else type(value)()
    return value


def new_row(customer_id: str) -> Row:
    """A new customer's row: the defaults (mutable ones copied), its id, written now."""
    row = {name: _fresh(value) for name, value in _defaults().items()}
    row["customer_id"], row["updated_at"] = customer_id, datetime.now(UTC)
    return row


_CURRENT = CurrentScore.__table__  # type: ignore[attr-defined]
_CURRENT_PREFIX = "current_"  # the current score's columns beside the features row's


@cache
def _rows_query(postgres: bool) -> Any:
    """The features rows with each customer's current score (the previous of the batch's score.updated)."""
    current = [_CURRENT.c[n].label(f"{_CURRENT_PREFIX}{n}") for n in ("customer_id", *write_behind.VALUE_COLUMNS)]
    joined = TABLE.outerjoin(_CURRENT, _CURRENT.c.customer_id == TABLE.c.customer_id)
    return for_each_key(select(*TABLE.c, *current).select_from(joined), TABLE.c.customer_id, postgres=postgres)


_ONE = select(*TABLE.c).where(TABLE.c.customer_id == bindparam("customer_id"))


async def preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """Read the features rows of a consumer batch's customers in one query, instead of one per event, and
    with them their current scores (which the batch's rescorings compare with at commit: write_behind).

    load then finds each row (or knows there is none yet) in the unit of work's FeatureRows.
    """
    session = uow.session
    cache_ = uow.state(FeatureRows)
    rows, absent = cache_.rows, cache_.absent
    current = write_behind.pending(uow).current
    ids = sorted(batch_customer_ids(events) - rows.keys() - absent)
    for chunk in chunks(ids):
        found = await session.execute(_rows_query(on_postgres(session)), {KEYS: list(chunk)})
        for row in found:
            values = row._asdict()
            scores = {name: values.pop(f"{_CURRENT_PREFIX}{name}") for name in write_behind.VALUE_COLUMNS}
            scored = values.pop(f"{_CURRENT_PREFIX}customer_id") is not None
            rows[values["customer_id"]] = values
            current[values["customer_id"]] = ScoreValues(**scores) if scored else None
        absent.update(i for i in chunk if i not in rows)


async def load(uow: UnitOfWork, customer_id: str) -> tuple[Row, FeatureState]:
    """The customer's features row and state, created on first sight (events may beat customer.created).

    The row is remembered for the rest of the transaction, so several events for one customer in one
    consumer batch build on each other; a new one is inserted at commit with its values as they stand then.
    """
    cache_ = uow.state(FeatureRows)
    row = cache_.rows.get(customer_id)
    if row is None:
        if customer_id not in cache_.absent:
            found = (await uow.session.execute(_ONE, {"customer_id": customer_id})).first()
            row = found._asdict() if found is not None else None
        if row is None:
            row = new_row(customer_id)
            cache_.new.add(customer_id)
            hold_until_commit(uow.session, _NEW, [row], insert_rows(TABLE))
        cache_.rows[customer_id] = row
    return row, features.load_state({name: row[name] for name in features.STATE_FIELDS})


def changed_values(row: Row, state: FeatureState) -> Row:
    """The state's column values that differ from the row's. Pure."""
    return {name: value for name, value in features.dump_state(state).items() if row[name] != value}


def store(uow: UnitOfWork, row: Row, state: FeatureState) -> None:
    """Put the state on the row; a stored row is written at commit with the batch's others, in one UPDATE
    whatever columns each changed. Only the columns that changed travel."""
    written = changed_values(row, state)
    row.update(written, updated_at=datetime.now(UTC))
    if row["customer_id"] not in uow.state(FeatureRows).new:  # a new row's INSERT takes the values
        hold_until_commit(uow.session, _CHANGED, [{"row": row, "columns": (*written, "updated_at")}], _write_changes)


def _write_changes(session: Session, held: list[dict[str, Any]]) -> None:
    changed: dict[str, tuple[Row, dict[str, None]]] = {}  # customer id -> (row, its changed columns)
    for entry in held:
        _, columns = changed.setdefault(entry["row"]["customer_id"], (entry["row"], {}))
        columns.update(dict.fromkeys(entry["columns"]))
    values = [{"customer_id": row["customer_id"], **{c: row[c] for c in columns}} for row, columns in changed.values()]
    # One statement whatever the rows changed (it covers every column), prepared once per connection.
    update_rows(session, TABLE, "customer_id", values, columns=COLUMNS)
