"""Rules, preview, playbooks, tasks, snooze, metrics and webhooks through the HTTP API."""

from datetime import timedelta
from typing import Any

import pytest

from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.retention.handlers import HANDLERS
from tests.unit.retention.events import T0, complaint, created, score, status_changed


async def feed(database: Database, *events: Any) -> None:
    async with database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


def problem_fields(response) -> set[str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["field"] for e in response.json()["errors"]}


async def test_the_default_rules_ship_enabled(app_db):
    client, _ = app_db
    body = (await client.get("/rules", params={"limit": 200})).json()
    kinds = {r["kind"] for r in body["items"]}
    assert kinds == {
        "churn_risk_above",
        "risk_jump",
        "p_alive_below",
        "severe_complaint",
        "complaint_overdue",
        "low_survey",
        "lifecycle_decline",
    }
    assert all(r["enabled"] for r in body["items"])


async def test_a_rule_is_created_read_updated_disabled_and_deleted(app_db):
    client, _ = app_db
    body = {"name": "Very high risk", "kind": "churn_risk_above", "severity": "high", "params": {"threshold": 0.9}}
    response = await client.post("/rules", json=body)
    assert response.status_code == 201, response.text
    rule = response.json()
    assert (rule["reason"], rule["params"], rule["enabled"]) == ("high_churn_risk", {"threshold": 0.9}, True)

    patched = await client.patch(f"/rules/{rule['id']}", json={"params": {"threshold": 0.95}, "reason": "very_high"})
    assert (patched.json()["params"], patched.json()["reason"]) == ({"threshold": 0.95}, "very_high")
    assert (await client.post(f"/rules/{rule['id']}/disable")).json()["enabled"] is False
    assert (await client.get(f"/rules/{rule['id']}")).json()["enabled"] is False
    assert (await client.post(f"/rules/{rule['id']}/enable")).json()["enabled"] is True
    assert (await client.delete(f"/rules/{rule['id']}")).status_code == 204
    assert (await client.get(f"/rules/{rule['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "churn_risk_above", "severity": "high"}, "params.threshold"),
        ({"name": "x", "kind": "churn_risk_above", "severity": "high", "params": {"threshold": 2}}, "params.threshold"),
        ({"name": "x", "kind": "risk_jump", "severity": "high", "params": {"delta": 0.2}}, "params.within_days"),
        ({"name": "x", "kind": "p_alive_below", "severity": "high", "params": {"threshold": 0.2}}, "params.tiers"),
        ({"name": "x", "kind": "bogus", "severity": "high"}, "kind"),
        ({"name": "x", "kind": "low_survey", "severity": "urgent", "params": {"nps_max": 6}}, "severity"),
        ({"name": "x", "kind": "low_survey", "severity": "low", "params": {"nps": 6}}, "params.nps"),
        ({"kind": "low_survey", "severity": "low", "params": {"nps_max": 6}}, "name"),
    ],
)
async def test_an_invalid_rule_is_a_422_naming_the_field(app_db, body, field):
    client, _ = app_db
    response = await client.post("/rules", json=body)
    assert response.status_code == 422
    assert field in problem_fields(response)


async def test_patching_a_rule_with_bad_params_is_refused_and_changes_nothing(app_db):
    client, _ = app_db
    response = await client.patch("/rules/default-risk-jump", json={"params": {"delta": 0.3}})
    assert response.status_code == 422
    assert "params.within_days" in problem_fields(response)
    assert (await client.get("/rules/default-risk-jump")).json()["params"] == {"delta": 0.2, "within_days": 7}


async def test_preview_of_a_stored_and_an_unsaved_rule_lists_who_would_have_been_alerted(app_db):
    client, database = app_db
    await feed(database, score("a", 0.2, days=0), score("b", 0.2, days=0), score("a", 0.75, days=2))
    await feed(database, score("b", 0.45, days=3))
    window = {"from": T0.isoformat(), "to": (T0 + timedelta(days=7)).isoformat()}
    stored = (await client.post("/rules/default-high-churn-risk/preview", json=window)).json()
    assert (stored["alerts"], [c["customer_id"] for c in stored["customers"]]) == (1, ["a"])
    assert stored["from"].startswith("2026-11-01")

    unsaved = {
        **window,
        "rule": {"name": "Lower bar", "kind": "churn_risk_above", "severity": "low", "params": {"threshold": 0.4}},
    }
    response = await client.post("/rules/preview", json=unsaved)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rule_id"], body["alerts"]) == (None, 2)
    assert [(c["customer_id"], c["first_triggered_at"][:10]) for c in body["customers"]] == [
        ("a", "2026-11-03"),
        ("b", "2026-11-04"),
    ]
    bad = await client.post("/rules/preview", json={**unsaved, "to": T0.isoformat()})
    assert bad.status_code == 422
    assert "to" in problem_fields(bad)


async def test_playbooks_are_listed_created_once_per_reason_and_patched(app_db):
    client, _ = app_db
    reasons = {p["reason"] for p in (await client.get("/playbooks")).json()["items"]}
    assert {"severe_complaint", "high_churn_risk", "churned"} <= reasons
    body = {"reason": "vip_watch", "name": "VIP", "steps": [{"action": "executive_outreach", "due_in_hours": 4}]}
    created_pb = await client.post("/playbooks", json=body)
    assert created_pb.status_code == 201
    assert (await client.post("/playbooks", json=body)).status_code == 409
    patched = await client.patch(f"/playbooks/{created_pb.json()['id']}", json={"control_share": 0.25})
    assert patched.json()["control_share"] == 0.25
    bad = await client.post(
        "/playbooks", json={**body, "reason": "x", "steps": [{"action": "dance", "due_in_hours": 1}]}
    )
    assert bad.status_code == 422
    assert "steps[0].action" in problem_fields(bad)
    bad = await client.patch(f"/playbooks/{created_pb.json()['id']}", json={"control_share": 1.5})
    assert "control_share" in problem_fields(bad)
    # A share is a number, never a flag read as 1; a sequence's key is "default" or a tier, as the schema says.
    bad = await client.patch(f"/playbooks/{created_pb.json()['id']}", json={"control_share": True})
    assert "control_share" in problem_fields(bad)
    bad = await client.post("/playbooks", json={**body, "reason": "y", "sequences": {"": {"steps": []}}})
    assert bad.status_code == 422


async def test_tasks_are_filtered_by_owner_and_overdue_and_completed_with_a_note(app_db):
    client, database = app_db
    await feed(database, created("c-1", owner="anna"), complaint("c-1"), created("c-2", owner="ben"), complaint("c-2"))
    annas = (await client.get("/tasks", params={"owner": "anna"})).json()
    assert {t["action"] for t in annas["items"]} == {"service_recovery", "call_owner"}
    assert {t["customer_id"] for t in annas["items"]} == {"c-1"}
    assert (await client.get("/tasks", params={"overdue": "true"})).json()["total"] == 0  # due in 24 h

    task = annas["items"][0]
    done = await client.post(f"/tasks/{task['id']}/complete", json={"note": "called, apologised"})
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["note"]) == ("completed", "called, apologised")
    assert (await client.get("/tasks", params={"owner": "anna", "status": "open"})).json()["total"] == 1
    assert (await client.post("/tasks/nope/complete")).status_code == 404


async def test_tasks_of_several_owners_are_listed_together_for_a_managers_team(app_db):
    client, database = app_db
    await feed(
        database,
        *(
            event
            for n, owner in enumerate(("anna", "ben", "cleo"))
            for event in (created(f"c-{n}", owner=owner), complaint(f"c-{n}"))
        ),
    )
    team = (await client.get("/tasks", params={"owner": ["anna", "ben"]})).json()
    assert {(t["owner"], t["customer_id"]) for t in team["items"]} == {("anna", "c-0"), ("ben", "c-1")}
    assert team["total"] == len(team["items"]) == 4  # two playbook tasks each


async def test_snooze_needs_a_future_date_and_a_reason(app_db):
    client, database = app_db
    await feed(database, complaint("c-1"))
    [alert] = (await client.get("/alerts")).json()["items"]
    past = await client.post(f"/alerts/{alert['id']}/snooze", json={"until": T0.isoformat(), "reason": "later"})
    assert past.status_code == 422
    assert "until" in problem_fields(past)
    missing = await client.post(f"/alerts/{alert['id']}/snooze", json={"until": "2999-01-01T00:00:00Z"})
    assert "reason" in problem_fields(missing)
    ok = await client.post(f"/alerts/{alert['id']}/snooze", json={"until": "2999-01-01T00:00:00Z", "reason": "audit"})
    assert (ok.json()["status"], ok.json()["snooze_reason"]) == ("snoozed", "audit")
    snoozed = (await client.get("/alerts", params={"status": "snoozed"})).json()
    assert [a["id"] for a in snoozed["items"]] == [alert["id"]]


async def test_alerts_filter_by_owner_and_tier_and_carry_their_priority(app_db):
    client, database = app_db
    await feed(database, created("c-1", owner="anna", tier="platinum"), score("c-1", 0.9, clv=5000.0), complaint("c-1"))
    await feed(database, created("c-2", owner="ben"), complaint("c-2"))
    body = (await client.get("/alerts", params={"owner": "anna", "tier": "platinum"})).json()
    assert {a["customer_id"] for a in body["items"]} == {"c-1"}
    assert body["items"][0]["priority"] == 4500.0
    assert "query.tier[0]" in problem_fields(await client.get("/alerts", params={"tier": "diamond"}))


async def test_metrics_show_a_churn_that_was_alerted(app_db):
    client, database = app_db
    await feed(database, created("c-1"), created("c-2"), created("c-3", segment="enterprise"), complaint("c-1"))
    await feed(database, status_changed("c-1", days=3))
    params = {"from": T0.isoformat(), "to": (T0 + timedelta(days=10)).isoformat()}
    body = (await client.get("/retention/metrics", params=params)).json()
    overall = body["overall"]
    assert (overall["customers"], overall["churned"], overall["churn_rate"]) == (3, 1, 0.3333)
    assert (overall["recall"], overall["precision"], overall["median_warning_days"]) == (1.0, 1.0, 3.0)
    assert overall["treated"] == {"alerts": 1, "churned": 1, "churn_rate": 1.0}
    by_segment = (await client.get("/retention/metrics", params={**params, "group_by": "segment"})).json()
    assert {g["key"]: g["churned"] for g in by_segment["groups"]} == {"enterprise": 0, "smb": 1}
    assert "group_by" in str((await client.get("/retention/metrics", params={"group_by": "planet"})).json())


async def test_webhooks_are_created_without_echoing_the_secret_listed_and_deleted(app_db):
    client, database = app_db
    body = {"url": "http://93.184.216.34/hook", "event_types": ["alert.raised"], "secret": "s" * 32}
    response = await client.post("/webhooks", json=body)
    assert response.status_code == 201
    hook = response.json()
    assert "secret" not in hook
    assert "event_types" in problem_fields(await client.post("/webhooks", json={**body, "event_types": ["nope"]}))
    assert "secret" in problem_fields(await client.post("/webhooks", json={**body, "secret": "short"}))
    assert "url" in problem_fields(await client.post("/webhooks", json={**body, "url": "not a url"}))

    await feed(database, complaint("c-1"))
    log = (await client.get(f"/webhooks/{hook['id']}/deliveries")).json()
    assert [(d["event_type"], d["status"], d["attempts"]) for d in log["items"]] == [("alert.raised", "pending", 0)]

    assert (await client.delete(f"/webhooks/{hook['id']}")).status_code == 204
    assert (await client.get("/webhooks")).json()["total"] == 0
    log = (await client.get(f"/webhooks/{hook['id']}/deliveries")).json()
    assert log["items"][0]["status"] == "failed"  # never sent after the unsubscribe


async def test_a_webhook_to_a_loopback_metadata_or_private_address_is_refused_with_a_422_on_url(app_db):
    client, _ = app_db
    for url in (
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
    ):
        response = await client.post("/webhooks", json={"url": url, "secret": "s" * 32})
        assert response.status_code == 422, url
        assert problem_fields(response) == {"url"}, url
    assert (await client.get("/webhooks")).json()["items"] == []
