"""`one_of`: one statement text for any number of values on PostgreSQL (so one prepared statement per
connection, not one per list length), an IN list elsewhere."""

from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from servicekit.sql import one_of

FACTS = Table("facts", MetaData(), Column("customer_id", String, primary_key=True))


def _sql(values: list[str], *, postgres: bool) -> str:
    query = select(FACTS.c.customer_id).where(one_of(FACTS.c.customer_id, values, postgres=postgres))
    return str(query.compile(dialect=postgresql.dialect() if postgres else sqlite.dialect()))


def test_on_postgres_the_text_is_the_same_for_any_number_of_values_and_binds_them_as_one_array():
    texts = {_sql([f"c{i}" for i in range(n)], postgres=True) for n in (1, 3, 30, 500)}
    assert len(texts) == 1
    [text] = texts
    assert "= ANY (" in text
    query = select(FACTS.c.customer_id).where(one_of(FACTS.c.customer_id, ["a", "b"], postgres=True))
    assert list(query.compile(dialect=postgresql.dialect()).params.values()) == [["a", "b"]]


def test_elsewhere_it_is_an_in_list_of_the_values():
    query = select(FACTS.c.customer_id).where(one_of(FACTS.c.customer_id, ["a", "b"], postgres=False))
    compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    assert "IN ('a', 'b')" in str(compiled)
