"""Customer-service reports against hand-computed figures on a small fixed status history.

The data set (period [2025-01-01, 2025-04-01)):
  c1 A/anna  active 2024-06-01, churned 2025-02-10 (competitor), won back 2025-03-01
  c2 A/anna  active 2024-07-01, churned 2025-03-15 (price)
  c3 B/ben   active 2024-08-01
  c4 B/ben   prospect 2024-12-01, active 2025-01-20
  c5 B/ben   active 2025-02-05, churned 2025-03-20 (relocation)
  c6 A/-     active 2023-01-01, churned 2024-11-01 (poor_service), won back 2025-01-15
  c7 B/-     active 2025-05-01 (after the period)
"""

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import insert, update

from services.customer.customers.models import Customer, CustomerAttribute
from services.customer.status.models import StatusChange

PERIOD = "from=2025-01-01&to=2025-04-01"


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


HISTORY: dict[str, tuple[str | None, str | None, list[tuple[str, str | None, str | None]]]] = {
    # id: (segment, owner, [(status, day recorded, churn reason)])
    "c1": (
        "A",
        "anna",
        [("active", "2024-06-01", None), ("churned", "2025-02-11", "competitor"), ("won_back", "2025-03-01", None)],
    ),
    "c2": ("A", "anna", [("active", "2024-07-01", None), ("churned", "2025-03-16", "price")]),
    "c3": ("B", "ben", [("active", "2024-08-01", None)]),
    "c4": ("B", "ben", [("prospect", "2024-12-01", None), ("active", "2025-01-20", None)]),
    "c5": ("B", "ben", [("active", "2025-02-05", None), ("churned", "2025-03-21", "relocation")]),
    "c6": (
        "A",
        None,
        [("active", "2023-01-01", None), ("churned", "2024-11-02", "poor_service"), ("won_back", "2025-01-15", None)],
    ),
    "c7": ("B", None, [("active", "2025-05-01", None)]),
}
# The churn day of each churn (recorded a day later above, as people do).
CHURN_DAY = {"c1": "2025-02-10", "c2": "2025-03-15", "c5": "2025-03-20", "c6": "2024-11-01"}


@pytest.fixture
async def history(api) -> Any:
    customers, changes = [], []
    for cid, (segment, owner, steps) in HISTORY.items():
        previous = None
        for version, (status, day, reason) in enumerate(steps, start=1):
            churned = date.fromisoformat(CHURN_DAY[cid]) if status == "churned" else None
            changes.append(
                {
                    "customer_id": cid,
                    "previous_status": previous,
                    "status": status,
                    "reason": reason,
                    "churned_at": churned,
                    "note": None,
                    "version": version,
                    "changed_at": _at(day),
                }
            )
            previous = status
        last_status, last_day, _ = steps[-1]
        last_churn = [s for s in steps if s[0] == "churned"]
        customers.append(
            {
                "id": cid,
                "kind": "person",
                "name": cid,
                "segment": segment,
                "owner": owner,
                "contacts": [],
                "status": last_status,
                "status_changed_at": _at(last_day),
                "tags": [],
                "attributes": {},
                "churned_at": date.fromisoformat(CHURN_DAY[cid]) if last_churn else None,
                "churn_reason": last_churn[-1][2] if last_churn else None,
                "version": len(steps),
                "created_at": _at(steps[0][1]),
                "updated_at": _at(last_day),
            }
        )
    async with api.database.sessions() as session:
        await session.execute(insert(Customer.__table__), customers)
        await session.execute(insert(StatusChange.__table__), changes)
        await session.commit()
    return api


async def _get(api, path: str) -> dict[str, Any]:
    response = await api.client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def test_churn_situation_counts_customers_new_lost_and_won_back_with_their_rates(history) -> None:
    body = await _get(history, f"/reports/customers/churn?{PERIOD}")
    [row] = body["items"]
    assert row == {
        "group": "all",
        "customers_at_start": 3,  # c1 c2 c3 (c4 a prospect, c6 churned)
        "customers_at_end": 4,  # c1 c3 c4 c6
        "retained": 2,  # c1 c3
        "new": 2,  # c4 c5
        "lost": 3,  # c1 c2 c5
        "won_back": 2,  # c1 c6
        "churn_rate": 1.0,
        "retention_rate": pytest.approx(2 / 3),
        "new_customer_rate": pytest.approx(2 / 3),
    }


async def test_churn_situation_by_segment_and_filtered_by_owner(history) -> None:
    body = await _get(history, f"/reports/customers/churn?{PERIOD}&group_by=segment")
    rows = {r["group"]: r for r in body["items"]}
    assert body["total"] == 2
    a, b = rows["A"], rows["B"]
    assert (a["customers_at_start"], a["customers_at_end"], a["retained"], a["new"], a["lost"], a["won_back"]) == (
        2,
        2,
        1,
        0,
        2,
        2,
    )
    assert (b["customers_at_start"], b["customers_at_end"], b["retained"], b["new"], b["lost"], b["won_back"]) == (
        1,
        2,
        1,
        2,
        1,
        0,
    )
    [ben] = (await _get(history, f"/reports/customers/churn?{PERIOD}&owner=ben"))["items"]
    assert (ben["customers_at_start"], ben["new"], ben["lost"]) == (1, 2, 1)


async def test_every_customer_report_filters_by_the_team_attribute(history) -> None:
    # c1 and c2 in team north, c3 in south, c5 with a number (not a team name) of the same text.
    rows = [("c1", "string", "north"), ("c2", "string", "north"), ("c3", "string", "south"), ("c5", "number", "7")]
    async with history.database.sessions() as session:
        await session.execute(
            insert(CustomerAttribute.__table__),
            [{"customer_id": c, "key": "team", "type": t, "value": v} for c, t, v in rows],
        )
        await session.commit()
    [north] = (await _get(history, f"/reports/customers/churn?{PERIOD}&team=north"))["items"]
    # c1 and c2 customers at the start, both churned, c1 won back: at the end only c1.
    assert (north["customers_at_start"], north["customers_at_end"], north["retained"]) == (2, 1, 1)
    assert (north["new"], north["lost"], north["won_back"]) == (0, 2, 1)
    [both] = (await _get(history, f"/reports/customers/churn?{PERIOD}&team=north&team=south"))["items"]
    assert (both["customers_at_start"], both["lost"]) == (3, 2)
    seven = await _get(history, f"/reports/customers/churn?{PERIOD}&team=7")
    assert seven["items"] == []  # a number is not a team name: no customer, no group
    reasons = await _get(history, f"/reports/customers/churn-reasons?{PERIOD}&team=north")
    assert reasons["churned"] == 2
    assert {r["reason"]: r["churned"] for r in reasons["by_reason"]} == {"competitor": 1, "price": 1}
    [win_back] = (await _get(history, f"/reports/customers/win-back?{PERIOD}&team=north"))["items"]
    assert (win_back["churned"], win_back["won_back"]) == (2, 1)
    cohorts = await _get(history, "/reports/customers/cohorts?from=2024-06-01&to=2024-09-01&months=1&team=south")
    assert {(p["cohort"], p["size"]) for p in cohorts["points"]} == {("2024-08", 1)}  # c3 only


async def test_churn_reasons_by_reason_side_voluntariness_and_mix_by_segment(history) -> None:
    body = await _get(history, f"/reports/customers/churn-reasons?{PERIOD}&group_by=segment")
    assert body["churned"] == 3
    assert [(r["reason"], r["side"], r["voluntary"], r["churned"]) for r in body["by_reason"]] == [
        ("competitor", "customer", True, 1),
        ("price", "company", True, 1),
        ("relocation", "customer", False, 1),
    ]
    assert [(r["side"], r["churned"], r["share"]) for r in body["by_side"]] == [
        ("company", 1, pytest.approx(1 / 3)),
        ("customer", 2, pytest.approx(2 / 3)),
    ]
    assert [(r["voluntary"], r["churned"]) for r in body["by_voluntary"]] == [(True, 2), (False, 1)]
    assert [(m["group"], m["reason"], m["share_of_group"]) for m in body["mix"]] == [
        ("A", "competitor", 0.5),
        ("A", "price", 0.5),
        ("B", "relocation", 1.0),
    ]
    only_b = await _get(history, f"/reports/customers/churn-reasons?{PERIOD}&segment=B")
    assert [r["reason"] for r in only_b["by_reason"]] == ["relocation"]
    company = await _get(history, f"/reports/customers/churn-reasons?{PERIOD}&reason=price&reason=competitor")
    assert company["churned"] == 2


async def test_win_back_rate_and_days_to_win_back(history) -> None:
    [row] = (await _get(history, f"/reports/customers/win-back?{PERIOD}"))["items"]
    assert (row["churned"], row["won_back"], row["win_back_rate"]) == (3, 1, pytest.approx(1 / 3))
    # c1: churned 2025-02-10, won back 2025-03-01 00:00 -> 19 days
    assert row["avg_days_to_win_back"] == pytest.approx(19.0)
    by_reason = (await _get(history, f"/reports/customers/win-back?{PERIOD}&group_by=reason"))["items"]
    assert {r["group"]: r["won_back"] for r in by_reason} == {"competitor": 1, "price": 0, "relocation": 0}


async def test_cohort_retention_curves_by_first_active_month(history) -> None:
    body = await _get(history, "/reports/customers/cohorts?from=2024-06-01&to=2024-09-01&months=12")
    curves: dict[str, list[float]] = {}
    for p in body["points"]:
        assert p["size"] == 1
        curves.setdefault(p["cohort"], []).append(p["retention"])
    # c1 joined 2024-06 and first churned in 2025-02 (month 8); c2 2024-07 -> 2025-03 (month 8); c3 never.
    assert curves == {
        "2024-06": [1.0] * 8 + [0.0] * 5,
        "2024-07": [1.0] * 8 + [0.0] * 5,
        "2024-08": [1.0] * 13,
    }


async def test_reports_answer_csv_on_request(history) -> None:
    response = await history.client.get(f"/reports/customers/churn-reasons?{PERIOD}&format=csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines() == [
        "reason,side,voluntary,churned,share",
        "competitor,customer,True,1,0.3333333333333333",
        "price,company,True,1,0.3333333333333333",
        "relocation,customer,False,1,0.3333333333333333",
    ]
    accepted = await history.client.get(f"/reports/customers/churn?{PERIOD}", headers={"Accept": "text/csv"})
    assert accepted.text.splitlines()[1].startswith("all,3,4,2,2,3,2,")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2025-04-01&to=2025-01-01", "query.to"),  # reversed
        ("from=2025-04-01&to=2025-04-01", "query.to"),  # empty
        ("from=2025-01-01", "query.to"),  # missing
        (f"{PERIOD}&group_by=colour", "query.group_by"),
        (f"{PERIOD}&reason=bored", "query.reason[0]"),
    ],
)
async def test_bad_report_input_is_a_problem_naming_the_field(api, query: str, field: str) -> None:
    response = await api.client.get(f"/reports/customers/churn-reasons?{query}")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize("route", ["churn", "churn-reasons", "win-back", "cohorts"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2025-04-01&to=2025-01-01", "query.to"),  # reversed
        ("from=2025-04-01&to=2025-04-01", "query.to"),  # empty
        ("to=2025-04-01", "query.from"),  # missing
        ("from=2025-01-01&to=2025-13-01", "query.to"),  # not a day
    ],
)
async def test_every_report_rejects_a_bad_period_naming_the_field(api, route: str, query: str, field: str) -> None:
    response = await api.client.get(f"/reports/customers/{route}?{query}")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize("route", ["churn-reasons", "win-back"])
async def test_reports_filtered_by_reason_reject_an_unknown_reason(api, route: str) -> None:
    response = await api.client.get(f"/reports/customers/{route}?{PERIOD}&reason=competitor&reason=bored")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "query.reason[1]" in [e["field"] for e in response.json()["errors"]]


async def _tiers(api) -> None:
    """c1 account-managed Gold over a scored iron, c2 scored gold, c3 managed platinum (value_tier), c4 an
    unknown tier name over a scored iron, c5 scored lead, c6 none, c7 scored gold."""
    managed = [("c1", "tier", "Gold"), ("c3", "value_tier", "platinum"), ("c4", "tier", "diamond")]
    scored = {"c1": "iron", "c2": "gold", "c4": "iron", "c5": "lead", "c7": "gold"}
    async with api.database.sessions() as session:
        await session.execute(
            insert(CustomerAttribute.__table__),
            [{"customer_id": c, "key": k, "type": "string", "value": v} for c, k, v in managed],
        )
        for cid, tier in scored.items():
            await session.execute(
                update(Customer.__table__)
                .where(Customer.__table__.c.id == cid)
                .values(scored_tier=tier, scored_tier_at=_at("2025-01-01"))
            )
        await session.commit()


async def test_churn_situation_filters_and_groups_by_the_managed_else_scored_tier(history) -> None:
    await _tiers(history)
    [row] = (await _get(history, f"/reports/customers/churn?{PERIOD}&tier=gold&tier=iron"))["items"]
    # c1 c2 (gold) and c4 (iron): c1 c2 customers at the start, c1 (won back) and c4 (new) at the end.
    assert (row["customers_at_start"], row["customers_at_end"], row["retained"]) == (2, 2, 1)
    assert (row["new"], row["lost"], row["won_back"]) == (1, 2, 1)
    body = await _get(history, f"/reports/customers/churn?{PERIOD}&group_by=tier")
    measures = ("customers_at_start", "customers_at_end", "retained", "new", "lost", "won_back")
    assert [(r["group"], *(r[m] for m in measures)) for r in body["items"]] == [
        ("gold", 2, 1, 1, 0, 2, 1),  # c1 c2 c7
        ("iron", 0, 1, 0, 1, 0, 0),  # c4
        ("lead", 0, 0, 0, 1, 1, 0),  # c5
        ("platinum", 1, 1, 1, 0, 0, 0),  # c3
        (None, 0, 1, 0, 0, 0, 1),  # c6
    ]
    [anna] = (await _get(history, f"/reports/customers/churn?{PERIOD}&tier=gold&owner=anna&segment=A"))["items"]
    assert (anna["customers_at_start"], anna["lost"]) == (2, 2)
    none = await _get(history, f"/reports/customers/churn?{PERIOD}&tier=platinum&owner=anna")
    assert none["items"] == []


async def test_churn_reasons_filter_by_tier_and_give_the_reason_mix_by_tier(history) -> None:
    await _tiers(history)
    gold = await _get(history, f"/reports/customers/churn-reasons?{PERIOD}&tier=gold")
    assert gold["churned"] == 2
    assert {r["reason"]: r["churned"] for r in gold["by_reason"]} == {"competitor": 1, "price": 1}
    body = await _get(history, f"/reports/customers/churn-reasons?{PERIOD}&group_by=tier")
    assert [(m["group"], m["reason"], m["churned"], m["share_of_group"]) for m in body["mix"]] == [
        ("gold", "competitor", 1, 0.5),
        ("gold", "price", 1, 0.5),
        ("lead", "relocation", 1, 1.0),
    ]
    priced = await _get(history, f"/reports/customers/churn-reasons?{PERIOD}&tier=gold&reason=price")
    assert priced["churned"] == 1


async def test_win_back_and_cohorts_filter_by_tier(history) -> None:
    await _tiers(history)
    [gold] = (await _get(history, f"/reports/customers/win-back?{PERIOD}&tier=gold"))["items"]
    assert (gold["churned"], gold["won_back"], gold["avg_days_to_win_back"]) == (2, 1, pytest.approx(19.0))
    by_tier = (await _get(history, f"/reports/customers/win-back?{PERIOD}&group_by=tier"))["items"]
    assert [(r["group"], r["churned"], r["won_back"]) for r in by_tier] == [("gold", 2, 1), ("lead", 1, 0)]
    cohorts = "/reports/customers/cohorts?from=2024-06-01&to=2024-09-01&months=1"
    platinum = await _get(history, f"{cohorts}&tier=platinum")
    assert {(p["cohort"], p["size"]) for p in platinum["points"]} == {("2024-08", 1)}  # c3 only
    gold_cohorts = await _get(history, f"{cohorts}&tier=gold")
    assert {p["cohort"] for p in gold_cohorts["points"]} == {"2024-06", "2024-07"}  # c1, c2


@pytest.mark.parametrize("route", ["churn", "churn-reasons", "win-back", "cohorts"])
async def test_every_report_rejects_an_unknown_tier_naming_it(api, route: str) -> None:
    response = await api.client.get(f"/reports/customers/{route}?{PERIOD}&tier=gold&tier=bronze")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "query.tier[1]" in [e["field"] for e in response.json()["errors"]]
