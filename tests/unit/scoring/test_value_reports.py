"""Customer value, the value reports and segments against hand-computed figures on a small fixed data set.

Unit costs: contact 2, complaint 10, return 5, margin 1, referral without amount 20; tier shares 20/20/20.

  id  seg spend purch last purchase  contacts compl returns  contribution  clv   tier(clv) wallet referrals
  c1  A   1000  10    2025-06-01     5        1     0        980           1500  platinum  2000   2 (one of 50)
  c2  A   500   5     2025-05-01     10       2     2        450           600   gold      400    -
  c3  B   200   2     2025-03-01     0        3     0        170           100   iron      -      1 (no amount)
  c4  B   100   1     2025-06-01     0        0     1        95            300   iron      -      -
  c5  B   50    1     2024-12-01     40       0     0        -30           10    lead      -      -
  c6  A   0     0     -              3        0     0        -6            -     -         -      -     (no purchase)
  c7  A   900   3     2025-06-01     erased

RFM (rank among c1..c5): c1 (4,5,5) champions, c2 (3,4,4) loyal, c3 (2,3,3) needs_attention,
c4 (4,1,2) new, c5 (1,1,1) hibernating.
Score history for the tier migration [2025-01-01, 2025-07-01): c1 gold -> platinum (up), c2 gold -> gold,
c3 platinum -> iron (down), c4 none -> iron (new), c5 lead -> lead, c6 none -> none.
"""

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from servicekit.db import Database
from servicekit.service import API, create_app
from services.scoring.main import SPEC, metadata
from services.scoring.reports.service import TIER_HISTORY_FROM_SCORES
from services.scoring.scores.feature_rows import new_features_row
from services.scoring.scores.models import CurrentScore, ScoreRecord
from services.scoring.settings import ScoringSettings


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


# id: segment, spend, purchases, last purchase, contacts, complaints, returns, clv, tier, wallet, referrals
CUSTOMERS: dict[str, tuple[Any, ...]] = {
    "c1": ("A", 1000.0, 10, "2025-06-01", 5, 1, 0, 1500.0, "platinum", 2000.0, (2, 50.0, 1)),
    "c2": ("A", 500.0, 5, "2025-05-01", 10, 2, 2, 600.0, "gold", 400.0, (0, 0.0, 0)),
    "c3": ("B", 200.0, 2, "2025-03-01", 0, 3, 0, 100.0, "iron", None, (1, 0.0, 0)),
    "c4": ("B", 100.0, 1, "2025-06-01", 0, 0, 1, 300.0, "iron", None, (0, 0.0, 0)),
    "c5": ("B", 50.0, 1, "2024-12-01", 40, 0, 0, 10.0, "lead", None, (0, 0.0, 0)),
    "c6": ("A", 0.0, 0, None, 3, 0, 0, None, None, None, (0, 0.0, 0)),
}
# (customer, as_of, tier)
HISTORY = [
    ("c1", "2024-12-15", "gold"),
    ("c1", "2025-03-01", "platinum"),
    ("c2", "2024-11-01", "gold"),
    ("c2", "2025-08-01", "lead"),
    ("c3", "2024-10-01", "platinum"),
    ("c3", "2025-02-01", "iron"),
    ("c4", "2025-06-01", "iron"),
    ("c5", "2024-12-01", "lead"),
    ("c5", "2025-05-01", "lead"),
    ("c6", "2024-12-01", None),
]
COSTS = {
    "value_cost_per_contact": 2.0,
    "value_cost_per_complaint": 10.0,
    "value_cost_per_return": 5.0,
    "value_referral_value": 20.0,
    "tier_shares": (0.2, 0.2, 0.2),
}


def _score(cid: str, as_of: str, tier: str | None, clv: float | None) -> dict[str, Any]:
    return {
        "customer_id": cid,
        "churn_risk": 0.1,
        "health": 80.0,
        "factors": {},
        "model_version": "rules-v1",
        "value_tier": tier,
        "clv": clv,
        "caused_by": f"e-{cid}-{as_of}",
        "caused_by_type": "interaction.recorded",
        "as_of": _at(as_of),
        "computed_at": _at(as_of),
    }


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = ScoringSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'value.db'}", **COSTS)
    app = create_app(SPEC, settings, roles=(API,))
    database: Database = app.state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    async with database.transaction() as session:
        for cid, (
            seg,
            spend,
            purchases,
            last,
            contacts,
            complaints,
            returns,
            _clv,
            _tier,
            wallet,
            ref,
        ) in CUSTOMERS.items():
            row = new_features_row(cid)
            row.segment, row.status, row.total_spend, row.purchases = seg, "active", spend, purchases
            row.last_purchase_at = None if last is None else _at(last)
            row.contacts, row.complaints_total, row.returns, row.wallet_estimate = contacts, complaints, returns, wallet
            row.referrals, row.referral_amount, row.referrals_with_amount = ref
            session.add(row)
        erased = new_features_row("c7")
        erased.erased, erased.total_spend, erased.purchases, erased.last_purchase_at = True, 900.0, 3, _at("2025-06-01")
        session.add(erased)
        await session.flush()
        for cid, as_of, tier in HISTORY:
            clv = CUSTOMERS[cid][7]
            record = ScoreRecord(**_score(cid, as_of, tier, clv), snapshot={})
            session.add(record)
            await session.flush()
            current = await session.get(CurrentScore, cid)
            if current is None:
                session.add(CurrentScore(**_score(cid, as_of, CUSTOMERS[cid][8], clv), score_id=record.id))
        await session.flush()
        # the tier history, as the migration derives it from the score history
        await session.execute(text(TIER_HISTORY_FROM_SCORES))
    app.state.test_settings = settings
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scoring") as c:
        c.app = app  # type: ignore[attr-defined]
        yield c
    await database.dispose()


def _basis(client: httpx.AsyncClient, basis: str) -> None:
    app = client.app  # type: ignore[attr-defined]
    app.state.settings = app.state.settings.model_copy(update={"value_basis": basis})


# ---- one customer ----------------------------------------------------------------------------------------


async def test_a_customers_value_on_the_contribution_basis(client):
    _basis(client, "contribution")
    body = (await client.get("/customers/c1/value")).json()
    assert body["basis"] == "contribution" and body["tier"] == "platinum"
    assert body["historical"] == {
        "revenue": 1000.0,
        "contacts": 5,
        "complaints": 1,
        "returns": 0,
        "cost_to_serve": 20.0,
        "contribution": 980.0,
    }
    assert body["current"]["clv"] == 1500.0 and body["current"]["value_tier"] == "platinum"
    assert body["potential"] == {"wallet_estimate": 2000.0, "share_of_wallet": 0.5, "potential_value": 1000.0}
    assert body["referral"] == {"referrals": 2, "referral_value": 70.0}
    assert (body["rfm"]["r"], body["rfm"]["f"], body["rfm"]["m"], body["rfm"]["segment"]) == (4, 5, 5, "champions")
    tiers = {cid: (await client.get(f"/customers/{cid}/value")).json()["tier"] for cid in CUSTOMERS}
    assert tiers == {"c1": "platinum", "c2": "gold", "c3": "iron", "c4": "lead", "c5": "lead", "c6": None}


async def test_rfm_of_every_customer_and_the_clv_basis_tier(client):
    rfm = {}
    for cid in CUSTOMERS:
        body = (await client.get(f"/customers/{cid}/value")).json()
        assert body["basis"] == "clv" and body["tier"] == CUSTOMERS[cid][8]
        rfm[cid] = (body["rfm"]["r"], body["rfm"]["f"], body["rfm"]["m"], body["rfm"]["segment"])
    assert rfm == {
        "c1": (4, 5, 5, "champions"),
        "c2": (3, 4, 4, "loyal"),
        "c3": (2, 3, 3, "needs_attention"),
        "c4": (4, 1, 2, "new"),
        "c5": (1, 1, 1, "hibernating"),
        "c6": (None, None, None, None),
    }
    c2 = (await client.get("/customers/c2/value")).json()
    assert c2["historical"]["contribution"] == 450.0
    assert c2["potential"] == {"wallet_estimate": 400.0, "share_of_wallet": 1.25, "potential_value": 0.0}


async def test_erased_and_unknown_customers_have_no_value(client):
    assert (await client.get("/customers/c7/value")).status_code == 404
    assert (await client.get("/customers/nobody/value")).status_code == 404


# ---- reports -------------------------------------------------------------------------------------------


def _by(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {i[key]: i for i in items}


async def test_pyramid_on_contribution(client):
    body = (await client.get("/reports/value/pyramid?basis=contribution")).json()
    assert body["basis"] == "contribution" and body["customers"] == 5 and body["value"] == 1665.0
    tiers = _by(body["items"], "tier")
    assert [i["tier"] for i in body["items"]] == ["platinum", "gold", "iron", "lead"]
    assert (tiers["platinum"]["customers"], tiers["platinum"]["value"]) == (1, 980.0)
    assert (tiers["lead"]["customers"], tiers["lead"]["value"]) == (2, 65.0)
    assert tiers["gold"]["value_share"] == pytest.approx(450 / 1665)
    assert tiers["lead"]["customer_share"] == pytest.approx(0.4)


async def test_pyramid_on_clv_is_the_default_and_uses_the_scored_tier(client):
    body = (await client.get("/reports/value/pyramid")).json()
    assert body["basis"] == "clv" and body["value"] == 2510.0
    assert {t: (i["customers"], i["value"]) for t, i in _by(body["items"], "tier").items()} == {
        "platinum": (1, 1500.0),
        "gold": (1, 600.0),
        "iron": (2, 400.0),
        "lead": (1, 10.0),
    }
    only_b = (await client.get("/reports/value/pyramid?segment=B")).json()
    assert only_b["customers"] == 3 and only_b["value"] == 410.0


async def test_concentration_80_20_lorenz_and_gini(client):
    body = (await client.get("/reports/value/concentration?basis=contribution&points=5")).json()
    # ascending, below zero as zero: 0, 95, 170, 450, 980
    assert body["customers"] == 5 and body["value"] == 1695.0
    assert body["top_share"] == pytest.approx(980 / 1695)
    assert body["gini"] == pytest.approx(2 * 7400 / (5 * 1695) - 6 / 5)
    assert [(p["customer_share"], round(p["value_share"], 6)) for p in body["items"]] == [
        (0.2, 0.0),
        (0.4, round(95 / 1695, 6)),
        (0.6, round(265 / 1695, 6)),
        (0.8, round(715 / 1695, 6)),
        (1.0, 1.0),
    ]
    clv = (await client.get("/reports/value/concentration?top=0.4")).json()
    assert clv["basis"] == "clv" and clv["top_share"] == pytest.approx(2100 / 2510)
    assert clv["gini"] == pytest.approx(2 * 11010 / (5 * 2510) - 6 / 5)
    assert len(clv["items"]) == 10 and clv["items"][-1]["value_share"] == pytest.approx(1.0)


async def test_tier_migration_matrix(client):
    body = (await client.get("/reports/value/tier-migration?from=2025-01-01&to=2025-07-01")).json()
    cells = {(i["from_tier"], i["to_tier"]): (i["customers"], i["move"]) for i in body["items"]}
    assert cells == {
        ("gold", "platinum"): (1, "up"),
        ("gold", "gold"): (1, "same"),
        ("platinum", "iron"): (1, "down"),
        ("none", "iron"): (1, "new"),
        ("lead", "lead"): (1, "same"),
        ("none", "none"): (1, "same"),
    }
    assert (body["upgraded"], body["downgraded"], body["unchanged"], body["new"]) == (1, 1, 3, 1)
    assert body["upgrade_rate"] == 0.25 and body["downgrade_rate"] == 0.25
    only_b = (await client.get("/reports/value/tier-migration?from=2025-01-01&to=2025-07-01&segment=B")).json()
    assert only_b["customers"] == 3


async def test_rfm_distribution(client):
    body = (await client.get("/reports/value/rfm")).json()
    assert body["customers"] == 5 and body["total"] == 5
    cells = {(i["r"], i["f"], i["m"]): (i["segment"], i["customers"]) for i in body["items"]}
    assert cells == {
        (4, 5, 5): ("champions", 1),
        (3, 4, 4): ("loyal", 1),
        (2, 3, 3): ("needs_attention", 1),
        (4, 1, 2): ("new", 1),
        (1, 1, 1): ("hibernating", 1),
    }
    segments = {s["segment"]: s["customers"] for s in body["segments"]}
    assert segments["champions"] == 1 and segments["at_risk"] == 0 and sum(segments.values()) == 5
    page = (await client.get("/reports/value/rfm?limit=2&offset=1")).json()
    assert [(i["r"], i["f"], i["m"]) for i in page["items"]] == [(4, 1, 2), (3, 4, 4)]


async def test_summary(client):
    body = (await client.get("/reports/value/summary")).json()["items"][0]
    assert body == {
        "customers": 5,
        "revenue": 1850.0,
        "cost_to_serve": 185.0,
        "contribution": 1665.0,
        "avg_contribution": 333.0,
        "customers_with_wallet": 2,
        "avg_share_of_wallet": 0.875,
        "potential_value": 1000.0,
        "referrals": 3,
        "referral_value": 90.0,
        "customers_with_clv": 5,
        "clv": 2510.0,
        "avg_clv": 502.0,
    }
    only_b = (await client.get("/reports/value/summary?segment=B")).json()["items"][0]
    assert (only_b["revenue"], only_b["contribution"]) == (350.0, 235.0)
    gold = (await client.get("/reports/value/summary?tier=gold")).json()["items"][0]
    assert (gold["customers"], gold["revenue"]) == (1, 500.0)


async def test_reports_as_csv(client):
    response = await client.get("/reports/value/pyramid?basis=contribution&format=csv")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["tier"], r["customers"], r["value"]) for r in rows] == [
        ("platinum", "1", "980.0"),
        ("gold", "1", "450.0"),
        ("iron", "1", "170.0"),
        ("lead", "2", "65.0"),
    ]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/reports/value/tier-migration?from=2025-07-01&to=2025-01-01", "query.to"),
        ("/reports/value/tier-migration?from=2025-07-01&to=2025-07-01", "query.to"),
        ("/reports/value/pyramid?basis=revenue", "query.basis"),
        ("/reports/value/concentration?points=1", "query.points"),
        ("/reports/value/summary?tier=diamond", "query.tier[0]"),
    ],
)
async def test_bad_report_input_names_the_field(client, url, field):
    response = await client.get(url)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]


# ---- segments ------------------------------------------------------------------------------------------


async def test_segments_list_count_export_and_delete(client):
    created = await client.post(
        "/segments",
        json={"name": "best", "filter": [{"field": "rfm_segment", "op": "in", "value": ["champions", "loyal"]}]},
    )
    assert created.status_code == 201
    best = created.json()["id"]
    listed = (await client.get(f"/segments/{best}/customers")).json()
    assert [i["customer_id"] for i in listed["items"]] == ["c1", "c2"] and listed["total"] == 2
    assert (await client.get(f"/segments/{best}/count")).json()["customers"] == 2

    low = (
        await client.post(
            "/segments", json={"name": "low", "filter": [{"field": "contribution", "op": "lt", "value": 100}]}
        )
    ).json()["id"]
    page = (await client.get(f"/segments/{low}/customers?limit=2")).json()
    assert [i["customer_id"] for i in page["items"]] == ["c4", "c5"] and page["total"] == 3
    export = await client.get(f"/segments/{low}/customers?format=csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["customer_id"], r["contribution"]) for r in rows] == [("c4", "95.0"), ("c5", "-30.0"), ("c6", "-6.0")]

    both = (
        await client.post(
            "/segments",
            json={
                "name": "B at risk of nothing",
                "filter": [
                    {"field": "segment", "op": "eq", "value": "B"},
                    {"field": "value_tier", "op": "ne", "value": "lead"},
                ],
            },
        )
    ).json()["id"]
    assert (await client.get(f"/segments/{both}/count")).json()["customers"] == 2

    assert (await client.get("/segments")).json()["total"] == 3
    assert (await client.delete(f"/segments/{best}")).status_code == 204
    gone = await client.get(f"/segments/{best}")
    assert gone.status_code == 404
    body = gone.json()
    assert (body["type"], body["title"], "detail" in body) == ("urn:crm:problem:not_found", "Segment not found", False)
    assert body["errors"] == [{"field": "id", "message": "unknown segment"}]
    assert (await client.get(f"/segments/{best}/customers")).status_code == 404


async def test_an_unknown_segment_field_is_a_422_naming_it(client):
    response = await client.post(
        "/segments",
        json={
            "name": "x",
            "filter": [{"field": "health", "op": "gt", "value": 1}, {"field": "email", "op": "eq", "value": "a"}],
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "body.filter[1].field", "message": response.json()["errors"][0]["message"]}
    ]
    assert "unknown field" in response.json()["errors"][0]["message"]
    assert (await client.get("/segments")).json()["total"] == 0
    fields = {f["field"] for f in (await client.get("/segments/fields")).json()}
    assert {"rfm_segment", "contribution", "value_tier", "lifecycle_stage", "segment"} <= fields


async def test_rfm_quintiles_in_sql_equal_the_formula_on_many_tied_customers(tmp_path):
    """60 customers with many ties: the report's cells equal measures.bucket over each customer's counts."""
    import random
    from collections import Counter

    from services.scoring.value import measures

    settings = ScoringSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'rfm.db'}")
    app = create_app(SPEC, settings, roles=(API,))
    database: Database = app.state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    rng = random.Random(7)
    people = [
        (
            f"p{i:02d}",
            _at(f"2025-0{rng.randint(1, 6)}-1{rng.randint(0, 2)}"),
            rng.choice([1, 1, 1, 2, 3, 8]),
            rng.choice([10.0, 20.0, 35.5, 99.0, 250.0]),
        )
        for i in range(60)
    ]
    async with database.transaction() as session:
        for cid, last, purchases, spend in people:
            row = new_features_row(cid)
            row.last_purchase_at, row.purchases, row.total_spend = last, purchases, spend
            session.add(row)
    n = len(people)
    expected: Counter[tuple[int, int, int]] = Counter()
    for _, last, purchases, spend in people:
        r = measures.bucket(sum(p[1] < last for p in people), n)
        f = measures.bucket(sum(p[2] < purchases for p in people), n)
        m = measures.bucket(sum(p[3] < spend for p in people), n)
        expected[(r, f, m)] += 1
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scoring") as client:
        body = (await client.get("/reports/value/rfm")).json()
        one = (await client.get("/customers/p07/value")).json()["rfm"]
    await database.dispose()
    assert {(i["r"], i["f"], i["m"]): i["customers"] for i in body["items"]} == dict(expected)
    _, last, purchases, spend = people[7]
    assert (one["r"], one["f"], one["m"]) == (
        measures.bucket(sum(p[1] < last for p in people), n),
        measures.bucket(sum(p[2] < purchases for p in people), n),
        measures.bucket(sum(p[3] < spend for p in people), n),
    )


async def test_segment_conditions_on_rfm_segments_and_quintiles(client):
    async def members(conditions):
        created = (await client.post("/segments", json={"name": "x", "filter": conditions})).json()["id"]
        return [i["customer_id"] for i in (await client.get(f"/segments/{created}/customers")).json()["items"]]

    assert await members([{"field": "rfm_segment", "op": "ne", "value": "champions"}]) == ["c2", "c3", "c4", "c5"]
    assert await members([{"field": "rfm_segment", "op": "eq", "value": "hibernating"}]) == ["c5"]
    assert await members([{"field": "r", "op": "gte", "value": 4}, {"field": "m", "op": "lte", "value": 2}]) == ["c4"]
