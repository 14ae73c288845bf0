"""The read models kept for the reports' speed: each customer's purchase months (cohorts) and loyalty as of
today (the daily sweep), on test_reports.py's data set, against hand-computed values and the period
reports they stand in for."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import select, update

from contracts.customer import CustomerErased
from servicekit.clock import utc_now
from servicekit.db import Database
from services.retention.reports import facts, loyalty_sweep, order_months
from services.retention.reports.loyalty import Thresholds
from services.retention.reports.models import CustomerFact, CustomerLoyalty
from tests.unit.retention.test_reports import Q1, apply, data_set, day, get, order, received

APRIL = date(2026, 4, 1)  # the sweep of that day types over [2026-01-01, 2026-04-01): Q1, 90 days


def month(text: str) -> int:
    """'YYYY-MM' as year x 12 + month - 1."""
    year, mon = text.split("-")
    return int(year) * 12 + int(mon) - 1


# ---- pure ------------------------------------------------------------------------------------------------


def test_month_number_is_the_utc_calendar_month():
    assert order_months.month_number(datetime(2026, 1, 31, 23, 30, tzinfo=UTC)) == month("2026-01")
    evening_west = datetime(2026, 1, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert order_months.month_number(evening_west) == month("2026-02")  # 01:00 UTC on 1 February
    assert order_months.month_number(datetime(2026, 2, 1)) == month("2026-02")  # naive: UTC
    assert month("2026-01") - month("2025-12") == 1


def test_purchase_months_are_bits_after_the_first_orders_month():
    march, june = datetime(2025, 3, 10, tzinfo=UTC), datetime(2025, 6, 30, 23, 0, tzinfo=UTC)
    assert order_months.with_order(0, None, march) == 0b1  # the first order
    months = order_months.with_order(0b1, march, june)
    assert months == 0b1001 and order_months.offsets(months) == [0, 3]
    assert order_months.with_order(months, march, june) == months  # the same month again: no change
    # An order before the first one: every month moves up by the months between them.
    january = datetime(2025, 1, 5, tzinfo=UTC)
    assert order_months.offsets(order_months.with_order(months, march, january)) == [0, 2, 5]
    # Further than 62 months after the first order: not kept; a first order moved that far keeps bit 0.
    assert order_months.with_order(0b1, march, datetime(2030, 6, 1, tzinfo=UTC)) == 0b1
    assert order_months.with_order(0b1, datetime(2031, 1, 1, tzinfo=UTC), january) == 0b1


def test_the_sweep_period_ends_at_the_start_of_the_day_and_spans_the_trend_window():
    period = loyalty_sweep.sweep_period(APRIL, Thresholds(trend_window_days=90.0))
    assert (period.first, period.end) == (date(2026, 1, 1), APRIL)
    assert loyalty_sweep.window_days(Thresholds(trend_window_days=0.2)) == 1


# ---- purchase months ---------------------------------------------------------------------------------------


async def months_of(database: Database) -> dict[str, tuple[int | None, int]]:
    """Per customer who bought: the first order's month and the purchase months."""
    async with database.sessions() as session:
        query = select(CustomerFact.customer_id, CustomerFact.first_order_month, CustomerFact.order_months)
        rows = (await session.execute(query)).all()
    return {customer_id: (first, months) for customer_id, first, months in rows if months}


def bits(*offsets: int) -> int:
    return sum(1 << k for k in offsets)


async def test_purchase_months_are_kept_as_orders_arrive_and_match_the_backfill(
    app_db: tuple[httpx.AsyncClient, Database],
):
    _, database = app_db
    late_first = order("c1", "2025-01-20", 10)  # before c1's first order (2025-03-01), arriving last
    extra = [order("c1", "2025-07-04", 10), order("c1", "2025-07-05", 10), late_first]
    await apply(database, [*data_set(), *extra])
    await apply(database, [*data_set(), *extra])  # redelivered: nothing changes
    kept = await months_of(database)
    # c1 bought in 2025-01 (its first month now), 03, 07, 11, 12 and 2026-02.
    assert kept["c1"] == (month("2025-01"), bits(0, 2, 6, 10, 11, 13))
    assert kept["c5"] == (month("2025-12"), bits(0, 1))  # 2025-12 and 2026-01
    assert set(kept) == {"c1", "c2", "c3", "c4", "c5", "c6"}  # c7 never bought
    async with database.transaction() as session:
        await session.execute(update(CustomerFact).values(order_months=0, first_order_month=None))
        await facts.backfill_order_months(session)
    assert await months_of(database) == kept


async def test_erasure_removes_the_read_model_rows(app_db: tuple[httpx.AsyncClient, Database]):
    _, database = app_db
    await apply(database, data_set())
    async with database.transaction() as session:
        await loyalty_sweep.sweep(session, day=APRIL, thresholds=Thresholds())
    erased = received(CustomerErased(customer_id="c1", erased_at=day("2026-05-01")), "/crm/customer")
    await apply(database, [erased, erased])
    async with database.sessions() as session:
        assert await session.get(CustomerLoyalty, "c1") is None
        assert await session.get(CustomerLoyalty, "c2") is not None


# ---- loyalty as of today -------------------------------------------------------------------------------------


@pytest.fixture
async def swept(app_db: tuple[httpx.AsyncClient, Database]) -> httpx.AsyncClient:
    client, database = app_db
    await apply(database, data_set())
    async with database.transaction() as session:
        assert await loyalty_sweep.sweep(session, day=APRIL, thresholds=Thresholds()) == 4  # c5-c7 churned
    async with database.transaction() as session:  # the day's sweep is done: a second does nothing
        assert await loyalty_sweep.sweep(session, day=APRIL, thresholds=Thresholds()) is None
    return client


async def test_before_the_first_sweep_today_has_no_as_of_and_no_customers(
    app_db: tuple[httpx.AsyncClient, Database],
):
    client, database = app_db
    await apply(database, data_set())
    body = await get(client, "/reports/retention/loyalty/today")
    assert (body["as_of"], body["window_days"], body["customers"]) == (None, None, 0)


async def test_loyalty_today_is_the_period_typing_of_the_sweeps_window(swept: httpx.AsyncClient):
    today = await get(swept, "/reports/retention/loyalty/today")
    period = await get(swept, f"/reports/retention/loyalty?{Q1}")
    assert (today["as_of"], today["window_days"]) == ("2026-04-01T00:00:00Z", 90)
    assert {r["type"]: r["customers"] for r in today["items"]} == {
        "true": 1,
        "latent": 1,
        "spurious": 1,
        "none": 1,
        "unmeasured": 0,
    }
    for key in ("customers", "repeat_rate", "satisfaction_traps", "items"):
        assert today[key] == period[key]
    alice = await get(swept, "/reports/retention/loyalty/today?owner=alice")
    assert {r["type"]: r["customers"] for r in alice["items"] if r["customers"]} == {"latent": 1, "none": 1}
    gold_north = await get(swept, "/reports/retention/loyalty/today?tier=gold&team=north")
    assert gold_north["customers"] == 2  # c1 and c3


async def test_satisfaction_trap_today_lists_the_swept_traps(swept: httpx.AsyncClient):
    body = await get(swept, "/reports/retention/satisfaction-trap/today")
    period = await get(swept, f"/reports/retention/satisfaction-trap?{Q1}")
    assert body["total"] == 1 and body["items"] == period["items"]
    assert (await get(swept, "/reports/retention/satisfaction-trap/today?owner=bob"))["items"] == []
    response = await swept.get("/reports/retention/satisfaction-trap/today?format=csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert [r["customer_id"] for r in csv.DictReader(io.StringIO(response.text))] == ["c1"]


async def test_a_customer_who_churned_after_the_sweep_leaves_today_s_report(swept: httpx.AsyncClient, app_db):
    from tests.unit.retention.test_reports import churned

    _, database = app_db
    await apply(database, [churned("c4", "2026-04-01", "competitor", "customer")])
    body = await get(swept, "/reports/retention/loyalty/today")
    assert body["customers"] == 3 and {r["type"]: r["customers"] for r in body["items"]}["true"] == 0


@pytest.mark.parametrize("query, field", [("tier=tin", "tier"), ("limit=0", "limit")])
async def test_bad_filters_are_problems_naming_the_field(swept: httpx.AsyncClient, query: str, field: str):
    response = await swept.get(f"/reports/retention/satisfaction-trap/today?{query}")
    assert response.status_code == 422 and field in response.text


async def test_the_background_round_sweeps_once_a_day(app_db: tuple[httpx.AsyncClient, Database]):
    from services.retention.background import loyalty_sweep_round
    from services.retention.settings import RetentionSettings

    client, database = app_db
    await apply(database, data_set())
    settings = RetentionSettings(database_url="sqlite+aiosqlite://")
    assert await loyalty_sweep_round(database, settings) == 4  # today's: the customers now (c1-c4)
    assert await loyalty_sweep_round(database, settings) is None  # done for today: nothing more
    body = await get(client, "/reports/retention/loyalty/today")
    assert body["customers"] == 4 and body["window_days"] == 90
    assert body["as_of"].startswith(utc_now().date().isoformat())
