"""SQL building blocks for sets of rows, the same on PostgreSQL and SQLite: chunks for IN lists,
per-key lookups, one UPDATE for many rows, the dialect's INSERT, and ORM rows built and changed
without pydantic's per-field cost (for consumers that write thousands of rows a second).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    Boolean,
    ColumnElement,
    Select,
    String,
    Table,
    Text,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_attribute
from sqlalchemy.orm.instrumentation import manager_of_class

from servicekit.turns import give_turn

# SQLite before 3.32 allows 999 bound parameters; statements over many ids or rows go in chunks of this size.
IN_CHUNK = 500

T = TypeVar("T")


def chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` values (for IN (...) lists and multi-row statements)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_text(value: Any) -> str:
    # numpy scalars (model fits' figures) and other float subclasses serialise as the standard library does
    return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


KEYS = "keys"  # the bound parameter of for_each_key's values


def for_each_key(query: Select[Any], key: ColumnElement[Any], *, postgres: bool, param: str = KEYS) -> Select[Any]:
    """`query` restricted to rows whose `key` is one of the values bound at execution as KEYS
    (`session.execute(statement, {KEYS: [...]})`), looked up key by key on PostgreSQL. `param` names the
    bound values otherwise (one statement restricting several queries to different keys).

    With `key IN (...)`, PostgreSQL's cached generic plan, or statistics that lag a table growing fast
    (an inbox, a signal log), can prefer a scan that reads every row of the table's other index ranges
    and filters the keys: tens of milliseconds per batch, growing with the table. A LATERAL subquery per
    key (kept whole by OFFSET 0) can only be answered by a lookup on an index that leads with `key`;
    the keys travel as one array parameter, so the statement text is the same for any number of keys.
    A query of one ORM class gets its rows back as objects; a FOR UPDATE in `query` locks them key by
    key, in the order of the values. Build the statement once (it takes more CPU to build than to run)
    and bind the keys, and any other values, at execution.
    """
    if not postgres:
        return query.where(key.in_(bindparam(param, expanding=True)))
    keys = func.unnest(bindparam(param, type_=ARRAY(String))).table_valued("key").render_derived()
    per_key = query.where(key == keys.c.key).offset(0).lateral()
    [first, *others] = query.column_descriptions
    entity = first.get("entity") if not others and first.get("expr") is first.get("entity") else None
    columns = [aliased(entity, per_key)] if entity is not None else list(per_key.c)
    return select(*columns).select_from(keys.join(per_key, true()))


def one_of(column: ColumnElement[Any], values: Sequence[Any], *, postgres: bool) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL `column = ANY(array)`, one bound array: the statement text is the
    same for any number of values, where an IN list has its own text (another prepared statement on the
    connection, another plan source in its backend) for every length."""
    if not postgres:
        return column.in_(list(values))
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))


def update_rows(
    session: Session, table: Table, key: str, rows: Sequence[dict[str, Any]], *, columns: Sequence[str] = ()
) -> None:
    """Write each row's values onto the table row whose `key` column equals the row's `key` value.

    On PostgreSQL one UPDATE .. FROM unnest(an array per column): one statement and one execution for
    any number of rows, where an executemany runs the UPDATE once per row. Elsewhere an executemany.
    A JSON column's values travel as an array of their JSON texts, cast back to JSON in the SET (an array
    of JSON values does not bind). Rows may carry different columns: a column a row leaves out keeps its
    stored value (each row then carries a text marking which columns it sets), still in one statement, so
    a batch of rows changed in different ways costs one round trip, not one per set of changed columns.
    `columns`: the columns the statement covers whatever the rows carry (the same statement for any rows,
    prepared once per connection); by default those the rows carry.
    """
    if not rows:
        return
    first = rows[0].keys()
    if not columns and all(row.keys() == first for row in rows):
        names = tuple(first)
        sparse = False
    else:  # in the table's column order, so the same columns make the same statement
        given = {key, *columns} if columns else set().union(*(row.keys() for row in rows))
        names = tuple(c.name for c in table.columns if c.name in given)
        sparse = True
    if not on_postgres(session):
        parameters = [{f"_{n}": row.get(n) for n in names} for row in rows]
        if sparse:
            for row, bound in zip(rows, parameters, strict=True):
                bound.update({f"_set_{n}": n in row for n in names if n != key})
        session.execute(_update_by_key(table, key, names, sparse), parameters)
        return
    statement, json = _update_from_arrays(table, key, names, sparse)
    arrays: dict[str, list[Any]] = {
        f"_{n}": [json_text(row[n]) if n in row else None for row in rows]
        if n in json
        else [row.get(n) for row in rows]
        for n in names
    }
    if sparse:  # per row, one character per column: "1" where the row sets it
        written = [n for n in names if n != key]
        arrays[_WRITTEN] = ["".join("1" if n in row else "0" for n in written) for row in rows]
    session.execute(statement, arrays)


# The statements of update_rows, built once per table and set of columns with the values bound at
# execution: building one (the unnest alias and its columns) and its cache key cost more CPU than
# running it, for consumers that write every batch.
@cache
def _update_by_key(table: Table, key: str, names: tuple[str, ...], sparse: bool = False) -> Any:
    by_key = update(table).where(table.c[key] == bindparam(f"_{key}"))
    if not sparse:
        return by_key.values({n: bindparam(f"_{n}") for n in names if n != key})
    given = {n: bindparam(f"_{n}", type_=table.c[n].type) for n in names if n != key}
    flags = {n: bindparam(f"_set_{n}", type_=Boolean) for n in given}
    return by_key.values({n: case((flags[n], value), else_=table.c[n]) for n, value in given.items()})


@cache
def _update_from_arrays(
    table: Table, key: str, names: tuple[str, ...], sparse: bool = False
) -> tuple[Any, frozenset[str]]:
    json = frozenset(n for n in names if isinstance(table.c[n].type, JSON))
    arrays = [bindparam(f"_{n}", type_=ARRAY(Text) if n in json else ARRAY(table.c[n].type)) for n in names]
    # Which columns each row sets travel as one text per row (a flag array per column would cost a
    # conversion per row and column on the way out).
    written = [bindparam(_WRITTEN, type_=ARRAY(Text))] if sparse else []
    given = func.unnest(*arrays, *written).table_valued(*names, *[_WRITTEN][: len(written)])
    given = given.render_derived(name="given")
    values: dict[str, Any] = {
        n: cast(given.c[n], table.c[n].type) if n in json else given.c[n] for n in names if n != key
    }
    if sparse:
        marks = given.c[_WRITTEN]
        values = {n: case((_sets(marks, i), v), else_=table.c[n]) for i, (n, v) in enumerate(values.items())}
    return update(table).where(table.c[key] == given.c[key]).values(values), json


async def insert_rows_from_arrays(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    skip_conflicts_on: str | None = None,
    returning: str | None = None,
) -> list[Any]:
    """Insert rows (each with every column of the first row); returns the `returning` column's values of
    the rows inserted. skip_conflicts_on: a unique column; a row whose value is taken is skipped.

    On PostgreSQL one insert_from_arrays statement per IN_CHUNK * 4 rows: one short statement whatever the
    rows, where a multi-row VALUES list is parsed and planned anew at each size and binds every value of
    every row on its own. Elsewhere multi-row INSERTs of IN_CHUNK rows.
    """
    if not rows:
        return []
    names = tuple(rows[0])
    postgres = on_postgres(session)
    statement: Any = insert_from_arrays(table, names) if postgres else sqlite.insert(table)
    if skip_conflicts_on is not None:
        statement = statement.on_conflict_do_nothing(index_elements=[skip_conflicts_on])
    if returning is not None:
        statement = statement.returning(table.c[returning])
    found: list[Any] = []
    for number, chunk in enumerate(chunks(rows, IN_CHUNK * 4) if postgres else chunks(rows)):
        if number:  # SQLite runs in this thread: the loop's other tasks get a turn between statements
            await give_turn()
        result = await session.execute(statement, column_arrays(table, names, chunk) if postgres else list(chunk))
        if returning is not None:
            found.extend(result.scalars())
    return found


_WRITTEN = "_written"  # update_rows' bound array of which columns each row sets


@cache
def insert_from_arrays(table: Table, names: tuple[str, ...], *, prefix: str = "_") -> postgresql.Insert:
    """PostgreSQL: INSERT INTO table (names) SELECT .. FROM unnest(an array per column) WITH ORDINALITY,
    in the rows' order; bind the arrays with column_arrays() (the same `prefix`: another one lets two such
    inserts share a statement, as CTEs). Add ON CONFLICT / RETURNING once to the result.

    A multi-row INSERT of N rows (what SQLAlchemy's insertmanyvalues makes of an executemany with
    RETURNING) has its own SQL text for every N, so each batch size became another prepared statement
    on every pooled connection and another plan source in its PostgreSQL backend: memory on both sides
    that grew with each new batch size, up to the statement cache's bound. This text is the same for any
    number of rows, prepared once per connection, with one parameter per column instead of per value.
    """
    json = frozenset(n for n in names if isinstance(table.c[n].type, JSON))
    arrays = [bindparam(f"{prefix}{n}", type_=ARRAY(Text) if n in json else ARRAY(table.c[n].type)) for n in names]
    given = func.unnest(*arrays).table_valued(*names, with_ordinality=_ORDINAL).render_derived(name="given")
    values = [cast(given.c[n], table.c[n].type) if n in json else given.c[n] for n in names]
    return postgresql.insert(table).from_select(list(names), select(*values).order_by(given.c[_ORDINAL]))


def column_arrays(
    table: Table, names: Sequence[str], rows: Sequence[dict[str, Any]], *, prefix: str = "_"
) -> dict[str, list[Any]]:
    """insert_from_arrays' parameters: per column its rows' values (a JSON column's as JSON texts)."""
    json = {n for n in names if isinstance(table.c[n].type, JSON)}
    return {
        f"{prefix}{n}": [json_text(row[n]) if row.get(n) is not None else None for row in rows]
        if n in json
        else [row.get(n) for row in rows]
        for n in names
    }


_ORDINAL = "_ordinal"  # insert_from_arrays' row number, which keeps the rows' order (ids, lock order)


def _sets(written: Any, index: int) -> Any:
    """Whether the row's `written` text marks its column `index` (from 0) as set: substr(written, index+1, 1) = '1'."""
    return func.substr(written, literal_column(str(index + 1)), literal_column("1")) == literal_column("'1'")


def assign(row: Any, **values: Any) -> None:
    """Set attributes of an ORM row through SQLAlchemy's instrumentation alone.

    For the ORM the same as assigning them one by one (tracked, flushed, visible on the row); a
    SQLModel row's own __setattr__ also runs pydantic's on every assignment, about three times the
    cost, which shows in consumers that update thousands of rows a second.
    """
    for key, value in values.items():
        set_attribute(row, key, value)


def new_row(cls: type[T], **values: Any) -> T:
    """A new (transient) row of a SQLModel table class, built through SQLAlchemy's instrumentation alone.

    The same object as `cls(**values)`: every field not given takes its default (a factory is called),
    and add() then inserts it. SQLModel's constructor sets each field through pydantic's __setattr__ as
    well and asks pydantic for every default, several times the cost, which shows in consumers that
    create rows per event. The instance starts as SQLAlchemy starts a row it loads (class manager's
    new_instance: no __init__) and holds the values in its instance dict, where the ORM reads a new row's
    values for its INSERT. No validation, as for table models anyway.
    """
    row: T = manager_of_class(cls).new_instance()
    object.__setattr__(row, "__pydantic_fields_set__", set(values))  # as the constructor: the fields given
    for name, default, factory in _field_defaults(cls):
        if name not in values:
            values[name] = default() if factory else default
    # A new row has no history to keep: its INSERT takes every value from the instance dict.
    row.__dict__.update(values)
    return row


_FIELD_DEFAULTS: dict[type[Any], tuple[tuple[str, Any, bool], ...]] = {}


def _field_defaults(cls: type[Any]) -> tuple[tuple[str, Any, bool], ...]:
    """(name, default or factory, is a factory) of each field of `cls` with a default (read once per class)."""
    found = _FIELD_DEFAULTS.get(cls)
    if found is None:
        found = _FIELD_DEFAULTS[cls] = tuple(
            (name, info.default_factory, True) if info.default_factory is not None else (name, info.default, False)
            for name, info in cls.model_fields.items()
            if info.default_factory is not None or not info.is_required()
        )
    return found


def on_postgres(session: AsyncSession | Session) -> bool:
    """Whether the session's database is PostgreSQL (else SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def dialect_insert(session: AsyncSession | Session) -> Callable[..., postgresql.Insert | sqlite.Insert]:
    """The INSERT construct of the session's database: both offer ON CONFLICT DO NOTHING / DO UPDATE."""
    return postgresql.insert if on_postgres(session) else sqlite.insert
