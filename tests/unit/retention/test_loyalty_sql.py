"""The loyalty reports type customers in SQL: the SQL must agree with the pure typing, row for row."""

import random

import pytest
from sqlalchemy import Column, Float, Integer, MetaData, Table, and_, create_engine, insert, select

from services.retention.reports.loyalty import Attitude, Behaviour, Thresholds, classify
from services.retention.reports.loyalty_queries import declines, loyalty_columns

FEATURES = Table(
    "features",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("orders", Integer),
    Column("tenure", Float),
    Column("recent", Integer),
    Column("prior", Integer),
    Column("wallet", Float),
    Column("nps", Integer),
    Column("csat", Integer),
)


def maybe(rng: random.Random, value: object, share: float = 0.3) -> object:
    return None if rng.random() < share else value


@pytest.mark.parametrize("thresholds", [Thresholds(), Thresholds(repeat_orders=1, decline_ratio=0.0, nps_promoter=7)])
def test_sql_typing_agrees_with_the_pure_typing(thresholds: Thresholds) -> None:
    rng = random.Random(11)
    rows = [
        {
            "id": i,
            "orders": (orders := rng.randint(0, 6)),
            "tenure": maybe(rng, rng.choice([0.0, 179.9, 180.0, 400.0]), 0.1) if orders else None,
            "recent": rng.randint(0, 3),
            "prior": rng.randint(0, 3),
            "wallet": maybe(rng, rng.choice([0.2, 0.5, 0.9]), 0.6),
            "nps": maybe(rng, rng.randint(0, 10), 0.4),
            "csat": maybe(rng, rng.randint(1, 5), 0.4),
        }
        for i in range(2000)
    ]
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        FEATURES.create(conn)
        conn.execute(insert(FEATURES), rows)
        c = FEATURES.c
        typed = loyalty_columns(
            orders=c.orders,
            tenured=and_(c.tenure.is_not(None), c.tenure >= thresholds.min_tenure_days),
            declining=declines(c.recent, c.prior, thresholds),
            wallet=c.wallet,
            nps=c.nps,
            csat=c.csat,
            t=thresholds,
        )
        answers = conn.execute(select(c.id, typed.type, typed.trap).order_by(c.id)).all()
    for row, (_, kind, trap) in zip(rows, answers, strict=True):
        expected = classify(
            Behaviour(row["orders"], row["tenure"], row["recent"], row["prior"], row["wallet"]),
            Attitude(row["nps"], row["csat"]),
            thresholds,
        )
        assert (kind, bool(trap)) == (expected.type.value, expected.satisfaction_trap), row
