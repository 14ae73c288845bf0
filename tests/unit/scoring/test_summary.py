"""The pyramid, funnel and risk distribution: the pure assembly and the aggregate route."""

from services.scoring.scores import summary
from tests.unit.scoring import events as ev
from tests.unit.scoring.test_api import app_db, handle  # noqa: F401  (the fixture)


def test_tiers_come_platinum_first_with_value_shares_and_unvalued_last():
    rows = [("lead", 6, 60.0), ("platinum", 1, 540.0), (None, 3, None), ("gold", 2, 0.0)]
    shares = summary.tier_shares(rows)
    assert [s["tier"] for s in shares] == ["platinum", "gold", "iron", "lead", None]
    assert [s["customers"] for s in shares] == [1, 2, 0, 6, 3]
    assert [s["value_share"] for s in shares] == [0.9, 0.0, 0.0, 0.1, 0.0]


def test_no_value_at_all_gives_zero_shares_and_no_unvalued_row_when_none_is():
    shares = summary.tier_shares([("gold", 2, None)])
    assert [s["tier"] for s in shares] == ["platinum", "gold", "iron", "lead"]
    assert all(s["value_share"] == 0.0 for s in shares)


def test_stages_follow_the_lifecycle_and_risk_buckets_cover_zero_to_one():
    stages = summary.stage_counts([("decline", 2), ("exploration", 5), ("weird", 1)])
    assert stages == [
        {"stage": "exploration", "customers": 5},
        {"stage": "formation", "customers": 0},
        {"stage": "stability", "customers": 0},
        {"stage": "decline", "customers": 2},
        {"stage": None, "customers": 1},
    ]
    assert [summary.risk_bucket(r) for r in (0.0, 0.05, 0.1, 0.999, 1.0)] == [0, 0, 1, 9, 9]
    buckets = summary.risk_distribution({0: 3, 9: 1})
    assert (buckets[0], buckets[-1]) == (
        {"low": 0.0, "high": 0.1, "customers": 3},
        {"low": 0.9, "high": 1.0, "customers": 1},
    )


async def test_the_summary_route_counts_every_scored_customer_once(app_db):  # noqa: F811
    client, database = app_db
    await handle(
        database,
        ev.customer_created("calm", segment="smb"),
        ev.purchase("calm", id="p1", days=0),
        ev.customer_created("angry", segment="smb"),
        *[ev.complaint("angry", id=f"k{i}", days=i) for i in range(3)],
        ev.customer_created("other", segment="enterprise"),
        ev.complaint("other", id="k9", severity="critical"),
    )
    ranked = (await client.get("/scores")).json()
    body = (await client.get("/scores/summary")).json()
    assert body["customers"] == ranked["total"] == 3
    assert sum(b["customers"] for b in body["risk"]) == 3
    assert sum(s["customers"] for s in body["stages"]) == 3
    assert sum(t["customers"] for t in body["tiers"]) == 3
    expected = [0] * 10
    for item in ranked["items"]:
        expected[summary.risk_bucket(item["churn_risk"])] += 1
    assert [b["customers"] for b in body["risk"]] == expected
    smb = (await client.get("/scores/summary", params={"segment": "smb"})).json()
    assert smb["customers"] == 2


def test_the_cells_of_one_grouped_scan_fold_into_the_pyramid_funnel_and_risk_rows():
    from services.scoring.scores.summary import fold_cells

    cells = [
        ("gold", "formation", 2, 3, 300.0),
        ("gold", "decline", 9, 1, None),
        (None, "formation", 0, 2, None),
        ("lead", None, 2, 4, 40.0),
    ]
    tiers, stages, risk = fold_cells(cells)
    assert sorted(tiers, key=str) == sorted([("gold", 4, 300.0), (None, 2, None), ("lead", 4, 40.0)], key=str)
    assert dict(stages) == {"formation": 5, "decline": 1, None: 4}
    assert risk == {2: 7, 9: 1, 0: 2}
