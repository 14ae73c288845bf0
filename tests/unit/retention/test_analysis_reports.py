"""Cohorts by first-purchase month and task SLA per owner, against hand-computed values.

The data set is test_reports.py's seven customers plus c8 (alice, retail, north, no tier): orders on
2025-12-20 and 2026-02-05. First purchases, and so cohorts: c4 2025-01, c1 2025-03, c2 2025-06,
c6 2025-10, c5 and c8 2025-12, c3 2026-03; c7 never bought. Churns: c5 2026-02-10, c6 2026-03-01.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from servicekit.db import Database
from services.retention.analysis.curves import CohortPoint, cohort_points, month_name
from services.retention.models import metadata
from services.retention.tasks.models import Task, TaskStatus
from tests.unit.databases import Schema
from tests.unit.retention.conftest import retention_api, seed_defaults
from tests.unit.retention.test_reports import apply, created, data_set, get, order


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def task(n: int, cid: str, owner: str | None, created_at: str, due: str, status: TaskStatus, done: str | None) -> Task:
    return Task(
        id=f"t-{n}",
        customer_id=cid,
        reason="churn_risk",
        action="call",
        owner=owner,
        status=status,
        due_at=at(due),
        completed_at=at(done) if done else None,
        created_at=at(created_at),
    )


OPEN, DONE, CANCELLED = TaskStatus.open, TaskStatus.completed, TaskStatus.cancelled


def tasks() -> list[Task]:
    return [
        task(1, "c1", "alice", "2026-01-01", "2026-01-03", DONE, "2026-01-02"),  # on time, 24 h
        task(2, "c1", "alice", "2026-01-10", "2026-01-12", DONE, "2026-01-13"),  # 24 h late, 72 h
        task(3, "c1", "alice", "2026-01-20", "2026-02-01", OPEN, None),  # overdue
        task(4, "c1", "alice", "2026-02-10", "2026-02-15", CANCELLED, None),
        task(5, "c2", "bob", "2026-03-01", "2026-03-02", DONE, "2026-03-02"),  # at its due time: on time
        task(6, "c2", "bob", "2026-03-01", "2099-06-01", OPEN, None),  # not due yet
        task(7, "c3", None, "2026-03-01", "2026-03-10", DONE, "2026-03-04T12:00:00"),  # 84 h
        task(8, "c1", "alice", "2025-12-01", "2025-12-31", OPEN, None),  # due before Q1
    ]


async def seed_data_set(database: Database) -> None:
    await seed_defaults(database)
    extra = [created("c8", "alice", "retail", "north", None), order("c8", "2025-12-20", 40)]
    await apply(database, [*data_set(), *extra, order("c8", "2026-02-05", 60)])
    async with database.transaction() as session:
        session.add_all(tasks())


# The default rules and playbooks, the data set and the tasks: built once per test process, copied per test.
DATA_SET = Schema(metadata, source="/crm/retention", seed=seed_data_set)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with retention_api(tmp_path / "api.db", DATA_SET) as (client, _):
        yield client


def points(body: dict[str, Any], cohort: str) -> list[tuple[int, int, int, int]]:
    """(month, size, active, retained) of one cohort."""
    return [(p["month"], p["size"], p["active"], p["retained"]) for p in body["points"] if p["cohort"] == cohort]


# ---- cohorts ---------------------------------------------------------------------------------------------


async def test_cohorts_by_first_purchase_month(client: httpx.AsyncClient):
    body = await get(client, "/reports/retention/cohorts?from=2025-10-01&to=2026-01-01&months=3")
    assert {p["cohort"] for p in body["points"]} == {"2025-10", "2025-12"}
    # c6 bought only in its first month and churned in 2026-03, after the curve's last month.
    assert points(body, "2025-10") == [(0, 1, 1, 1), (1, 1, 0, 1), (2, 1, 0, 1), (3, 1, 0, 1)]
    # c5 (2025-12, 2026-01; churned 2026-02-10) and c8 (2025-12, 2026-02).
    assert points(body, "2025-12") == [(0, 2, 2, 2), (1, 2, 1, 2), (2, 2, 1, 1), (3, 2, 0, 1)]
    third = next(p for p in body["points"] if p["cohort"] == "2025-12" and p["month"] == 2)
    assert (third["active_share"], third["retention"]) == (0.5, 0.5)


async def test_cohorts_over_a_year_with_filters(client: httpx.AsyncClient):
    body = await get(client, "/reports/retention/cohorts?from=2025-01-01&to=2025-07-01&months=12")
    assert [(p["cohort"], len([q for q in body["points"] if q["cohort"] == p["cohort"]])) for p in body["points"]][
        ::13
    ] == [("2025-01", 13), ("2025-03", 13), ("2025-06", 13)]
    active = {
        c: [p["month"] for p in body["points"] if p["cohort"] == c and p["active"]]
        for c in ("2025-01", "2025-03", "2025-06")
    }
    assert active == {"2025-01": [0, 4, 11], "2025-03": [0, 8, 9, 11], "2025-06": [0, 5, 7, 8]}
    assert all(p["retention"] == 1.0 for p in body["points"])
    whole = "from=2025-01-01&to=2026-04-01&months=0"
    retail = await get(client, f"/reports/retention/cohorts?{whole}&segment=retail")
    assert [(p["cohort"], p["size"]) for p in retail["points"]] == [("2025-03", 1), ("2025-06", 1), ("2025-12", 2)]
    bob = await get(client, f"/reports/retention/cohorts?{whole}&owner=bob")
    assert [p["cohort"] for p in bob["points"]] == ["2025-01", "2025-06", "2025-10"]
    gold = await get(client, f"/reports/retention/cohorts?{whole}&tier=gold&team=north")
    assert [p["cohort"] for p in gold["points"]] == ["2025-03", "2025-12", "2026-03"]  # c1, c5 (by score), c3


async def test_cohorts_as_csv(client: httpx.AsyncClient):
    response = await client.get("/reports/retention/cohorts?from=2025-10-01&to=2025-11-01&months=1&format=csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows == [
        {"cohort": "2025-10", "size": "1", "month": "0", "active": "1", "active_share": "1.0", "retained": "1",
         "retention": "1.0"},
        {"cohort": "2025-10", "size": "1", "month": "1", "active": "0", "active_share": "0.0", "retained": "1",
         "retention": "1.0"},
    ]  # fmt: skip


def test_cohort_points_stop_at_the_last_ended_month_and_count_a_churn_in_its_month_as_lost():
    members = [("2026-09", None, 3), ("2026-09", "2026-10", 1)]
    active = [("2026-09", "2026-09", 4), ("2026-09", "2026-11", 2)]
    got = cohort_points(members, active, months=12, last_month="2026-11")
    assert got == [
        CohortPoint("2026-09", 4, 0, 4, 1.0, 4, 1.0),
        CohortPoint("2026-09", 4, 1, 0, 0.0, 3, 0.75),
        CohortPoint("2026-09", 4, 2, 2, 0.5, 3, 0.75),
    ]
    assert cohort_points(members, active, months=12, last_month="2026-08") == []
    assert month_name(2026 * 12) == "2026-01"


# ---- task SLA --------------------------------------------------------------------------------------------


async def test_task_sla_per_owner(client: httpx.AsyncClient):
    body = await get(client, "/reports/retention/task-sla?from=2026-01-01&to=2026-04-01")
    alice, bob, unassigned = body["items"]
    assert alice == {
        "owner": "alice",
        "tasks": 4,
        "completed": 2,
        "completed_on_time": 1,
        "completed_late": 1,
        "open_overdue": 1,
        "open_not_due": 0,
        "cancelled": 1,
        "sla_due": 3,
        "sla_met": 1,
        "sla_compliance": pytest.approx(1 / 3),
        "hours_to_complete_avg": pytest.approx(48.0),
        "hours_late_avg": pytest.approx(24.0),
    }
    assert (bob["tasks"], bob["sla_due"], bob["sla_met"], bob["sla_compliance"], bob["hours_late_avg"]) == (
        1,
        1,
        1,
        1.0,
        None,
    )
    assert (unassigned["owner"], unassigned["hours_to_complete_avg"]) == (None, pytest.approx(84.0))
    assert body["total"] == 3
    later = await get(client, "/reports/retention/task-sla?from=2099-01-01&to=2100-01-01&owner=bob")
    assert [(r["tasks"], r["open_not_due"], r["sla_due"], r["sla_compliance"]) for r in later["items"]] == [
        (1, 1, 0, None)
    ]
    south = await get(client, "/reports/retention/task-sla?from=2026-01-01&to=2026-04-01&team=south")
    assert [r["owner"] for r in south["items"]] == ["bob"]
    gold = await get(client, "/reports/retention/task-sla?from=2026-01-01&to=2026-04-01&tier=gold")
    assert [r["owner"] for r in gold["items"]] == ["alice", None]
    page = await get(client, "/reports/retention/task-sla?from=2026-01-01&to=2026-04-01&limit=1&offset=1")
    assert ([r["owner"] for r in page["items"]], page["total"]) == (["bob"], 3)
    past = await get(client, "/reports/retention/task-sla?from=2026-01-01&to=2026-04-01&limit=1&offset=5")
    assert (past["items"], past["total"]) == ([], 3)
    csv_rows = list(csv.DictReader(io.StringIO((await client.get(
        "/reports/retention/task-sla?from=2026-01-01&to=2026-04-01&format=csv")).text)))  # fmt: skip
    assert [(r["owner"], r["sla_compliance"]) for r in csv_rows][1:] == [("bob", "1.0"), ("", "1.0")]


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["cohorts", "task-sla"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-04-01&to=2026-01-01", "query.to"),  # reversed
        ("from=2026-04-01&to=2026-04-01", "query.to"),  # empty
        ("to=2026-04-01", "query.from"),  # missing
        ("from=2026-01-01&to=2026-04-01&tier=diamond", "query.tier"),
        ("from=2026-01-01&to=2026-04-01&format=xml", "query.format"),
    ],
)
async def test_bad_input_is_a_problem_naming_the_field(client: httpx.AsyncClient, route: str, query: str, field: str):
    response = await client.get(f"/reports/retention/{route}?{query}")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()


async def test_bad_months_and_limit_name_their_fields(client: httpx.AsyncClient):
    for path, field in (("cohorts?months=37", "query.months"), ("cohorts?months=-1", "query.months"),
                        ("task-sla?limit=0", "query.limit"), ("task-sla?offset=-1", "query.offset")):  # fmt: skip
        response = await client.get(f"/reports/retention/{path}&from=2026-01-01&to=2026-04-01")
        assert response.status_code == 422, path
        assert response.json()["errors"][0]["field"] == field
