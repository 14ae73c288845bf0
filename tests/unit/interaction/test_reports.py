"""Complaint analytics against hand-computed figures on four complaints (January 2025).

k1 A billing  high phone  opened 01-02 00:00, due 01-03; valid, resolved 01-02 18:00 (0.75 d)
k2 A billing  low  email  opened 01-10, due 01-12; rejected 01-13 (after its deadline)
k3 B delivery high phone  opened 01-20, due 01-21; valid, never resolved (deadline passed)
k4 C delivery low  web    opened 01-25, due 01-30; valid, resolved 01-27 (2 d)
plus a complaint of A opened on 2024-12-30 (before the period) and a purchase (not a complaint).
"""

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert

from services.interaction.complaints.models import ComplaintStep
from services.interaction.interactions.models import Interaction
from services.interaction.replica.models import KnownCustomer

PERIOD = "from=2025-01-01&to=2025-02-01"


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


COMPLAINTS = [
    ("k1", "A", "billing", "high", "phone", "2025-01-02", "2025-01-03",
     [("acknowledged", "2025-01-02T06:00"), ("valid", "2025-01-02T12:00"), ("resolved", "2025-01-02T18:00")]),
    ("k2", "A", "billing", "low", "email", "2025-01-10", "2025-01-12",
     [("acknowledged", "2025-01-11"), ("rejected", "2025-01-13")]),
    ("k3", "B", "delivery", "high", "phone", "2025-01-20", "2025-01-21",
     [("acknowledged", "2025-01-20T01:00"), ("valid", "2025-01-20T02:00")]),
    ("k4", "C", "delivery", "low", "web", "2025-01-25", "2025-01-30",
     [("acknowledged", "2025-01-25T01:00"), ("valid", "2025-01-26"), ("resolved", "2025-01-27")]),
    ("k0", "A", "billing", "low", "phone", "2024-12-30", "2025-01-02", []),
]  # fmt: skip


@pytest.fixture
async def client(api) -> Any:
    client, _ = api
    interactions, steps = [], []
    for cid, customer, category, severity, channel, opened, due, workflow in COMPLAINTS:
        status = workflow[-1][0] if workflow else "open"
        interactions.append(
            {"id": cid, "customer_id": customer, "type": "complaint", "channel": channel, "severity": severity,
             "category": category, "occurred_at": _t(opened), "recorded_at": _t(opened), "due_at": _t(due),
             "complaint_status": status}
        )  # fmt: skip
        previous = "open"
        for step, at in workflow:
            steps.append({"complaint_id": cid, "previous_status": previous, "status": step, "at": _t(at)})
            previous = step
    interactions.append(
        {"id": "p1", "customer_id": "B", "type": "purchase", "occurred_at": _t("2025-01-05"),
         "recorded_at": _t("2025-01-05")}
    )  # fmt: skip
    async with client.database.sessions() as session:
        for row in interactions:
            await session.execute(insert(Interaction.__table__), row)
        await session.execute(insert(ComplaintStep.__table__), steps)
        await session.commit()
    return client


async def test_complaint_analytics_for_the_period(client) -> None:
    response = await client.get(f"/reports/complaints?{PERIOD}")
    assert response.status_code == 200, response.text
    [row] = response.json()["items"]
    assert row == {
        "group": "all",
        "opened": 4,
        "valid": 3,
        "rejected": 1,
        "validity_rate": 0.75,
        "resolved": 2,
        "avg_days_to_resolve": pytest.approx((0.75 + 2.0) / 2),
        "max_days_to_resolve": pytest.approx(2.0),
        "sla_due": 4,  # k1, k2, k4 handled; k3's deadline passed
        "sla_met": 2,  # k1, k4
        "sla_compliance": 0.5,
        "complainers": 3,
        "repeat_complainers": 1,  # A
        "repeat_complaint_share": 0.5,  # k1, k2 of four
    }


async def test_complaint_analytics_by_category_and_filtered_by_severity(client) -> None:
    body = (await client.get(f"/reports/complaints?{PERIOD}&group_by=category")).json()
    assert [
        (
            r["group"],
            r["opened"],
            r["validity_rate"],
            r["avg_days_to_resolve"],
            r["sla_compliance"],
            r["repeat_complainers"],
        )
        for r in body["items"]
    ] == [("billing", 2, 0.5, pytest.approx(0.75), 0.5, 1), ("delivery", 2, 1.0, pytest.approx(2.0), 0.5, 0)]
    [high] = (await client.get(f"/reports/complaints?{PERIOD}&severity=high")).json()["items"]
    assert (high["opened"], high["resolved"], high["sla_met"]) == (2, 1, 1)


async def test_complaint_analytics_filtered_by_the_customers_owner(client) -> None:
    """Owners from the customer replica: A and B are ann's, C is bob's; a customer the replica lacks
    (none here) or whose owner is unset matches no owner."""
    async with client.database.sessions() as session:
        await session.execute(
            insert(KnownCustomer.__table__),
            [
                {"customer_id": "A", "owner": "ann", "owner_known": True},
                {"customer_id": "B", "owner": "ann", "owner_known": True},
                {"customer_id": "C", "owner": "bob", "owner_known": True},
            ],
        )
        await session.commit()
    [ann] = (await client.get(f"/reports/complaints?{PERIOD}&owner=ann")).json()["items"]
    # k1, k2 (A) and k3 (B): k2 rejected; k1 resolved in 0.75 d; k1 in time, k2 late, k3's deadline passed.
    assert (ann["opened"], ann["valid"], ann["rejected"], ann["resolved"]) == (3, 2, 1, 1)
    assert (ann["sla_due"], ann["sla_met"], ann["complainers"], ann["repeat_complainers"]) == (3, 1, 2, 1)
    [bob] = (await client.get(f"/reports/complaints?{PERIOD}&owner=bob")).json()["items"]
    assert (bob["opened"], bob["avg_days_to_resolve"]) == (1, pytest.approx(2.0))
    both = (await client.get(f"/reports/complaints?{PERIOD}&owner=ann&owner=bob")).json()["items"]
    assert both[0]["opened"] == 4
    assert (await client.get(f"/reports/complaints?{PERIOD}&owner=carol")).json()["items"] == []


# Profiles in the replica: A retail/north, scored gold; B retail/south, managed platinum over a scored
# iron; C wholesale/north, scored iron.
PROFILES = [
    {"customer_id": "A", "owner": "ann", "segment": "retail", "team": "north", "scored_tier": "gold"},
    {"customer_id": "B", "owner": "ann", "segment": "retail", "team": "south", "managed_tier": "platinum",
     "scored_tier": "iron"},
    {"customer_id": "C", "owner": "bob", "segment": "wholesale", "team": "north", "scored_tier": "iron"},
]  # fmt: skip


@pytest.fixture
async def profiled(client) -> Any:
    async with client.database.sessions() as session:
        await session.execute(
            insert(KnownCustomer.__table__), [{"managed_tier": None, **p, "owner_known": True} for p in PROFILES]
        )
        await session.commit()
    return client


async def _only(client, query: str) -> dict[str, Any]:
    response = await client.get(f"/reports/complaints?{PERIOD}&{query}")
    assert response.status_code == 200, response.text
    [row] = response.json()["items"]
    return row


async def test_complaint_analytics_filtered_by_the_customers_segment(profiled) -> None:
    retail = await _only(profiled, "segment=retail")  # A and B: k1, k2, k3
    assert (retail["opened"], retail["valid"], retail["rejected"], retail["resolved"]) == (3, 2, 1, 1)
    assert (retail["sla_due"], retail["sla_met"], retail["complainers"], retail["repeat_complainers"]) == (3, 1, 2, 1)
    wholesale = await _only(profiled, "segment=wholesale")  # C: k4, resolved in 2 days
    assert (wholesale["opened"], wholesale["avg_days_to_resolve"]) == (1, pytest.approx(2.0))
    assert (await _only(profiled, "segment=retail&segment=wholesale"))["opened"] == 4
    assert (await profiled.get(f"/reports/complaints?{PERIOD}&segment=gov")).json()["items"] == []


async def test_complaint_analytics_filtered_by_the_customers_team(profiled) -> None:
    north = await _only(profiled, "team=north")  # A and C: k1, k2, k4
    assert (north["opened"], north["valid"], north["rejected"], north["validity_rate"]) == (
        3,
        2,
        1,
        pytest.approx(2 / 3),
    )
    # k1 in 0.75 d, k4 in 2 d; k1 and k4 in time, k2 late; A complained twice (k1, k2 of three).
    assert (north["resolved"], north["avg_days_to_resolve"]) == (2, pytest.approx(1.375))
    assert (north["sla_due"], north["sla_met"], north["repeat_complaint_share"]) == (3, 2, pytest.approx(2 / 3))
    south = await _only(profiled, "team=south")  # B: k3, valid, never resolved, its deadline passed
    assert (south["opened"], south["resolved"], south["sla_due"], south["sla_met"]) == (1, 0, 1, 0)


async def test_complaint_analytics_filtered_by_the_tier_managed_before_scored(profiled) -> None:
    gold = await _only(profiled, "tier=gold")  # A: k1 (valid, resolved in time), k2 (rejected late)
    assert (gold["opened"], gold["validity_rate"], gold["avg_days_to_resolve"]) == (2, 0.5, pytest.approx(0.75))
    assert (gold["sla_compliance"], gold["complainers"], gold["repeat_complaint_share"]) == (0.5, 1, 1.0)
    # B is platinum (account-managed) although scored iron: iron is C's k4 alone.
    assert (await _only(profiled, "tier=platinum"))["opened"] == 1
    iron = await _only(profiled, "tier=iron")
    assert (iron["opened"], iron["avg_days_to_resolve"]) == (1, pytest.approx(2.0))
    assert (await profiled.get(f"/reports/complaints?{PERIOD}&tier=lead")).json()["items"] == []


async def test_profile_filters_combine_with_each_other_the_period_and_the_groups(profiled) -> None:
    assert (await _only(profiled, "segment=retail&team=north"))["opened"] == 2  # A: k1, k2
    assert (await _only(profiled, "owner=ann&team=north&tier=gold"))["opened"] == 2  # A
    assert (await _only(profiled, "tier=gold&severity=high"))["opened"] == 1  # k1
    later = await profiled.get("/reports/complaints?from=2025-01-15&to=2025-02-01&team=north")
    assert [r["opened"] for r in later.json()["items"]] == [1]  # k4 (k1, k2 opened before the 15th)
    grouped = (await profiled.get(f"/reports/complaints?{PERIOD}&team=north&group_by=category")).json()
    assert [(r["group"], r["opened"]) for r in grouped["items"]] == [("billing", 2), ("delivery", 1)]
    assert (await profiled.get(f"/reports/complaints?{PERIOD}&owner=bob&segment=retail")).json()["items"] == []


async def test_complaint_analytics_as_csv(client) -> None:
    response = await client.get(f"/reports/complaints?{PERIOD}&group_by=severity&format=csv")
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0].startswith("group,opened,valid,rejected,validity_rate")
    assert [line.split(",")[:2] for line in lines[1:]] == [["high", "2"], ["low", "2"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2025-02-01&to=2025-01-01", "query.to"),
        (f"{PERIOD}&group_by=owner", "query.group_by"),
        (f"{PERIOD}&category=weather", "query.category[0]"),
        (f"{PERIOD}&owner=", "query.owner[0]"),
        (f"{PERIOD}&owner={'x' * 101}", "query.owner[0]"),
        (f"{PERIOD}&segment=", "query.segment[0]"),
        (f"{PERIOD}&segment=retail&segment={'x' * 101}", "query.segment[1]"),
        (f"{PERIOD}&team=", "query.team[0]"),
        (f"{PERIOD}&team={'x' * 101}", "query.team[0]"),
        (f"{PERIOD}&tier=diamond", "query.tier[0]"),
        (f"{PERIOD}&tier=gold&tier=Gold", "query.tier[1]"),
    ],
)
async def test_bad_complaint_report_input_is_a_problem_naming_the_field(api, query: str, field: str) -> None:
    client, _ = api
    response = await client.get(f"/reports/complaints?{query}")
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2025-02-01&to=2025-02-01", "query.to"),  # empty
        ("to=2025-02-01", "query.from"),  # missing
        (f"{PERIOD}&severity=apocalyptic", "query.severity[0]"),
        (f"{PERIOD}&limit=0", "query.limit"),
    ],
)
async def test_complaint_report_rejects_empty_periods_and_unknown_codes(api, query: str, field: str) -> None:
    client, _ = api
    response = await client.get(f"/reports/complaints?{query}")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]
