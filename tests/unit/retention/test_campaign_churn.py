"""A campaign's churn conditions: the audience narrowed at launch to customers whose latest churn had one of
the reasons, in the window, with at least the value lost (docs/campaigns.md#audience)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from servicekit.clock import utc_now
from services.retention.campaigns.churn import Churn, ChurnFilter, ValueBasis, matches
from services.retention.reports.models import ChurnFact
from tests.unit.retention.test_campaigns import AUDIENCE, FakeScoring, _offer, scoring  # noqa: F401 (fixture)

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def _churn(days_ago: float, reason: str | None = "competitor", predicted: float | None = 500.0) -> Churn:
    return Churn(NOW - timedelta(days=days_ago), reason, historical_value=100.0, predicted_value=predicted)


def test_every_condition_given_must_hold_and_no_churn_never_matches():
    anything = ChurnFilter()
    assert matches(_churn(10), anything, NOW) and not matches(None, anything, NOW)
    by_reason = ChurnFilter(reasons=["competitor", "price"])
    assert matches(_churn(10), by_reason, NOW)
    assert not matches(_churn(10, reason="relocation"), by_reason, NOW)
    assert not matches(_churn(10, reason=None), by_reason, NOW)
    window = ChurnFilter(churned_within_days=90, churned_before_days=30)  # lapsed one to three months ago
    assert [matches(_churn(d), window, NOW) for d in (10, 30, 60, 90, 91)] == [False, True, True, True, False]
    valuable = ChurnFilter(min_value_lost=400)
    assert matches(_churn(10), valuable, NOW)
    assert not matches(_churn(10, predicted=399.0), valuable, NOW)
    assert not matches(_churn(10, predicted=None), valuable, NOW)  # unknown value: not shown to be enough
    historical = ChurnFilter(min_value_lost=400, value_basis=ValueBasis.historical)
    assert not matches(_churn(10), historical, NOW)  # 100 of revenue up to the churn


def test_a_window_that_cannot_hold_is_refused():
    with pytest.raises(ValidationError, match="churned_before_days"):
        ChurnFilter(churned_within_days=30, churned_before_days=30)
    with pytest.raises(ValidationError):
        ChurnFilter(reasons=["Not A Code"])


async def test_the_launch_keeps_only_the_customers_whose_latest_churn_matches(app_db, scoring: FakeScoring):  # noqa: F811
    client, db = app_db
    offer = await _offer(client)
    now = utc_now()
    wanted = set(AUDIENCE[:6])
    async with db.transaction() as session:
        for i, customer_id in enumerate(AUDIENCE[:10]):
            # the first six left to a competitor 40 days ago with 500 of value; the next four do not match:
            # a relocation, too recent, too little value, and one who churned to a competitor long ago but
            # churned again (relocation) lately: the latest churn counts
            reason, days, value = {6: ("relocation", 40, 500.0), 7: ("competitor", 5, 500.0)}.get(
                i, ("competitor", 40, 500.0 if i != 8 else 50.0)
            )
            session.add(
                ChurnFact(
                    event_id=f"e{i}",
                    customer_id=customer_id,
                    churned_at=now - timedelta(days=days),
                    reason=reason,
                    predicted_value=value,
                )
            )
        session.add(
            ChurnFact(
                event_id="e9-again",
                customer_id=AUDIENCE[9],
                churned_at=now - timedelta(days=2),
                reason="relocation",
                predicted_value=500.0,
            )
        )
    churn = {"reasons": ["competitor"], "churned_within_days": 365, "churned_before_days": 30, "min_value_lost": 100}
    body = {
        "name": "Win back valuable competitor losses",
        "offer_id": offer["id"],
        "channel": "email",
        "segment_id": "seg_known",
        "holdout_share": 0,
        "starts_at": "2099-01-01T00:00:00Z",
        "churn": churn,
    }
    bad = await client.post("/campaigns", json={**body, "churn": {**churn, "churned_before_days": 400}})
    assert bad.status_code == 422 and "churned_before_days" in bad.text
    unknown = await client.post("/campaigns", json={**body, "churn": {"since": 3}})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "churn.since"
    created = await client.post("/campaigns", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["churn"] == {**churn, "value_basis": "predicted"}
    launched = (await client.post(f"/campaigns/{created.json()['id']}/launch")).json()
    assert (launched["audience"], launched["treated"]) == (len(wanted), len(wanted))
    members = (await client.get(f"/campaigns/{created.json()['id']}/members", params={"limit": 100})).json()
    assert {m["customer_id"] for m in members["items"]} == wanted
