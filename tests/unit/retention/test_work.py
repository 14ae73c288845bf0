"""GET /work-items (one item per customer) and POST /alerts/evaluate (rules on the current state)."""

from datetime import UTC, datetime, timedelta

import pytest

from services.retention.settings import get_settings
from tests.unit.retention.events import complaint, created, score, status_changed
from tests.unit.retention.test_api import raise_alerts


async def test_a_customer_with_several_alerts_is_one_item_listing_every_reason(app_db):
    client, database = app_db
    await raise_alerts(
        database,
        created("c-1", owner="anna"),
        created("c-2", owner="ben"),
        score("c-1", churn_risk=0.9, clv=1000.0),  # high_churn_risk
        complaint("c-1", severity="critical"),  # severe_complaint: a second alert, same customer
        score("c-2", churn_risk=0.7, clv=10_000.0),
    )
    alerts = (await client.get("/alerts")).json()
    assert alerts["total"] >= 3
    page = (await client.get("/work-items")).json()
    assert page["total"] == 2
    assert [i["customer_id"] for i in page["items"]] == ["c-2", "c-1"]  # by value at risk
    first = page["items"][1]
    assert {r["reason"] for r in first["reasons"]} >= {"high_churn_risk", "severe_complaint"}
    assert first["owner"] == "anna" and first["severity"] == "critical"
    # The owner filter the gateway forces on agents narrows the items the same way as alerts.
    mine = (await client.get("/work-items", params={"owner": "anna"})).json()
    assert [i["customer_id"] for i in mine["items"]] == ["c-1"] and mine["total"] == 1
    paged = (await client.get("/work-items", params={"limit": 1, "offset": 1})).json()
    assert [i["customer_id"] for i in paged["items"]] == ["c-1"] and paged["total"] == 2


@pytest.fixture
def horizon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_ALERT_HISTORY_HORIZON_DAYS", "30")
    get_settings.cache_clear()


async def test_after_a_backfill_one_evaluation_judges_each_customer_once(app_db, horizon):
    client, database = app_db
    old = datetime.now(UTC) - timedelta(days=3000)
    history = []
    for i in range(5):
        event = score(f"h-{i}", churn_risk=0.9 if i % 2 == 0 else 0.1, clv=100.0)
        event.data.as_of = old
        history.append(event)
    await raise_alerts(database, created("h-4"), status_changed("h-4", "churned"), *history)
    assert (await client.get("/work-items")).json()["total"] == 0  # history raised nothing

    pages = []
    after = ""
    while True:
        body = (await client.post("/alerts/evaluate", params={"after": after, "limit": 2})).json()
        pages.append(body)
        if body["done"]:
            break
        after = body["next_after"]
    assert sum(p["evaluated"] for p in pages) == 4 and sum(p["skipped"] for p in pages) == 1  # h-4 churned
    assert pages[0]["total"] == 5
    items = (await client.get("/work-items")).json()["items"]
    assert sorted(i["customer_id"] for i in items) == ["h-0", "h-2"]
    # Evaluating the same state again changes nothing.
    again = (await client.post("/alerts/evaluate", params={"limit": 100})).json()
    assert again["alerts_changed"] == 0
    assert len((await client.get("/alerts")).json()["items"]) == 2


async def test_an_evaluation_leaves_customers_whose_own_latest_event_is_beyond_the_horizon_to_win_back(app_db, horizon):
    client, database = app_db
    now = datetime.now(UTC)
    lapsed, recent = score("w-old", churn_risk=0.9, clv=100.0), score("w-new", churn_risk=0.9, clv=100.0)
    lapsed.data.as_of = lapsed.data.last_event_at = now - timedelta(days=3000)
    recent.data.as_of = recent.data.last_event_at = now - timedelta(days=40)  # history as it streamed in ...
    recent.data.last_event_at = now - timedelta(days=2)  # ... but the customer's own latest event is recent
    await raise_alerts(database, lapsed, recent)
    assert (await client.get("/work-items")).json()["total"] == 0

    body = (await client.post("/alerts/evaluate", params={"limit": 100})).json()
    assert (body["evaluated"], body["left_to_win_back"], body["done"]) == (1, 1, True)
    items = (await client.get("/work-items")).json()["items"]
    assert [i["customer_id"] for i in items] == ["w-new"]
