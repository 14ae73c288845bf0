"""Consent and the contact policy end to end on real Kafka and PostgreSQL (docs/consent.md).

An opted-out customer's alert creates no touch on that channel and the block is visible through the
gateway; quiet hours and the frequency cap hold under a burst of 100 alerts for one customer; consent
arrives from a marketing system on erp.consents.v1, and an unknown reference is dead-lettered.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from contracts.erp import ErpConsentChanged
from contracts.topics import ERP_CONSENTS, dead_letter
from servicekit.events.envelope import CloudEvent
from services.retention.settings import DEV_SURVEY_SECRET
from services.retention.surveys import survey_links
from tests.e2e.conftest import GATEWAY, token
from tests.e2e.helpers import (
    alerts_for,
    create_customer,
    eventually,
    post_complaint,
    produce,
    put_consent,
    read_topic,
)

pytestmark = pytest.mark.e2e


async def _touches(gateway: httpx.AsyncClient, customer_id: str, **params: object) -> dict:
    response = await gateway.get(f"/api/v1/customers/{customer_id}/touches", params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_opted_out_customers_alert_creates_no_touch_on_that_channel(gateway: httpx.AsyncClient):
    customer = await create_customer(gateway, owner="agent-consent")
    consent = await put_consent(
        gateway,
        customer["id"],
        {"channels": {"phone": {"status": "opt_out", "legal_basis": "consent", "source": "phone_call"}}},
    )
    assert consent["channels"]["phone"]["status"] == "opt_out"

    await post_complaint(gateway, customer["id"], severity="high")  # severe_complaint: recovery + call_owner
    alert = await eventually(lambda: _new_severe_alert(gateway, customer["id"], set()), what="the churn alert")
    touch = await eventually(lambda: _touch_of(gateway, customer["id"], alert["id"]), what="the blocked touch")
    assert (touch["channel"], touch["action"], touch["allowed"], touch["verdict"], touch["task_id"]) == (
        "phone",
        "call_owner",
        False,
        "opted_out",
        None,
    )
    assert touch["alert_id"] == alert["id"]
    tasks = (await gateway.get("/api/v1/tasks", params={"customer_id": customer["id"]})).json()["items"]
    # internal work is never blocked; the call was never created
    assert [t["action"] for t in tasks if t["alert_id"] == alert["id"]] == ["service_recovery"]

    today = datetime.now(UTC).date()
    report = await gateway.get(
        "/api/v1/reports/retention/touches-blocked", params={"from": str(today), "to": str(today + timedelta(days=1))}
    )
    assert report.status_code == 200, report.text
    assert report.json()["by_verdict"]["opted_out"] >= 1

    # the owner sees the block; another agent cannot tell the customer exists
    owner = {"Authorization": f"Bearer {token('agent', 'agent-consent')}"}
    other = {"Authorization": f"Bearer {token('agent', 'agent-other')}"}
    assert (await gateway.get(f"/api/v1/customers/{customer['id']}/touches", headers=owner)).status_code == 200
    assert (await gateway.get(f"/api/v1/customers/{customer['id']}/touches", headers=other)).status_code == 404
    blocked_put = await gateway.put(
        f"/api/v1/customers/{customer['id']}/consent", json={"channels": {"email": {"status": "opt_in"}}}, headers=other
    )
    assert blocked_put.status_code == 404


async def _touch_of(gateway: httpx.AsyncClient, customer_id: str, alert_id: str) -> dict | None:
    touches = [t for t in (await _touches(gateway, customer_id))["items"] if t["alert_id"] == alert_id]
    assert len(touches) <= 1
    return touches[0] if touches else None


async def _new_severe_alert(gateway: httpx.AsyncClient, customer_id: str, seen: set[str]) -> dict | None:
    return next(
        (
            a
            for a in await alerts_for(gateway, customer_id)
            if a["reason"] == "severe_complaint" and a["status"] == "open" and a["id"] not in seen
        ),
        None,
    )


async def _burst(gateway: httpx.AsyncClient, customer_id: str, alerts: int, seen: set[str]) -> None:
    """Raise and resolve one severe-complaint alert after another for the customer."""
    for _ in range(alerts):
        await post_complaint(gateway, customer_id, severity="high")
        alert = await eventually(lambda: _new_severe_alert(gateway, customer_id, seen), what="the next alert")
        seen.add(alert["id"])
        response = await gateway.post(f"/api/v1/alerts/{alert['id']}/resolve", json={"outcome": "false_alarm"})
        assert response.status_code == 200, response.text


def _local(at: str, zone: str) -> time:
    return datetime.fromisoformat(at).astimezone(ZoneInfo(zone)).time()


async def test_quiet_hours_and_the_cap_hold_under_a_burst_of_100_alerts(gateway: httpx.AsyncClient):
    """50 alerts with quiet hours around the calls' due time, then 50 without: every call of the first 50 is
    blocked for quiet hours, and of everything after, no more than the cap (3 in 7 days) is allowed.

    The scoring of 100 complaints raises churn-risk alerts too; their touches count against the same cap."""
    customer = await create_customer(gateway)
    zone = "Asia/Tokyo"
    # call_owner is due 24 h after its alert: quiet hours around that time on the customer's clock
    due = (datetime.now(UTC) + timedelta(hours=24)).astimezone(ZoneInfo(zone))
    start, end = (due - timedelta(hours=3)).time(), (due + timedelta(hours=3)).time()
    quiet = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}
    await put_consent(
        gateway,
        customer["id"],
        {"timezone": zone, "quiet_hours": quiet, "frequency_cap": {"max_touches": 3, "window_days": 7}},
    )
    seen: set[str] = set()
    await _burst(gateway, customer["id"], 50, seen)
    await put_consent(gateway, customer["id"], {"quiet_hours": None})
    cleared = datetime.now(UTC)
    await _burst(gateway, customer["id"], 50, seen)

    page = await _touches(gateway, customer["id"])
    assert page["total"] == len(page["items"])  # one page holds them all
    touches = page["items"]
    severe = [t for t in touches if t["reason"] == "severe_complaint"]
    assert len(severe) == 100 and {t["alert_id"] for t in severe} == seen
    assert all((t["channel"], t["action"]) == ("phone", "call_owner") for t in severe)

    before = [t for t in severe if datetime.fromisoformat(t["created_at"]) < cleared]
    after = [t for t in severe if datetime.fromisoformat(t["created_at"]) >= cleared]
    assert len(before) == 50 and len(after) == 50
    assert {t["verdict"] for t in before} == {"quiet_hours"}
    for touch in before:
        local = _local(touch["at"], zone)
        assert (start <= local or local < end) if start > end else (start <= local < end)
    assert {t["verdict"] for t in after} <= {"allowed", "frequency_cap"}

    # all touches lie within three days of each other: the 7-day cap allows exactly 3 of them in all
    allowed = [t for t in touches if t["allowed"]]
    assert len(allowed) == 3
    blocked = [t for t in touches if not t["allowed"]]
    assert len(allowed) + len(blocked) == page["total"]
    assert {t["verdict"] for t in blocked} <= {"quiet_hours", "frequency_cap"}

    tasks = (await gateway.get("/api/v1/tasks", params={"customer_id": customer["id"], "limit": 200})).json()
    contacting = [t for t in tasks["items"] if t["action"] != "service_recovery"]
    assert sorted(t["id"] for t in contacting) == sorted(t["task_id"] for t in allowed)


async def test_a_marketing_opt_out_arrives_on_erp_consents_and_an_unknown_reference_is_dead_lettered(
    gateway: httpx.AsyncClient,
):
    ref = f"ERP-CONSENT-{uuid.uuid4().hex[:8]}"
    customer = await create_customer(gateway, external_ref=ref)
    event = ErpConsentChanged(
        customer_ref=ref, channel="email", status="opt_out", source="marketing", changed_at=datetime.now(UTC)
    )
    await produce(ERP_CONSENTS, [(ref.encode(), CloudEvent.wrap(event, source="/marketing/e2e").to_json())])

    async def opted_out() -> dict | None:
        body = (await gateway.get(f"/api/v1/customers/{customer['id']}/consent")).json()
        email = body["channels"].get("email")
        return body if email and email["status"] == "opt_out" else None

    body = await eventually(opted_out, what="the marketing opt-out applied")
    assert body["channels"]["email"]["source"] == "marketing"
    history = (await gateway.get(f"/api/v1/customers/{customer['id']}/consent/history")).json()
    assert [(i["channel"], i["status"], i["source"]) for i in history["items"]] == [("email", "opt_out", "marketing")]
    # consent.changed on the customer topic carries codes only: no reference, no contact detail
    [record] = await eventually(
        lambda: read_topic(
            "crm.customer.v1", match=lambda r: r.key == customer["id"].encode() and b"consent.changed" in r.value
        ),
        what="consent.changed",
    )
    assert ref.encode() not in record.value
    assert orjson.loads(record.value)["data"]["channels"]["email"]["status"] == "opt_out"

    unknown = f"ERP-NOBODY-{uuid.uuid4().hex[:8]}"
    stray = ErpConsentChanged(customer_ref=unknown, channel="sms", status="opt_in", changed_at=datetime.now(UTC))
    await produce(ERP_CONSENTS, [(unknown.encode(), CloudEvent.wrap(stray, source="/marketing/e2e").to_json())])
    [dead] = await eventually(
        lambda: read_topic(dead_letter(ERP_CONSENTS), match=lambda r: r.key == unknown.encode()),
        what="the unknown reference dead-lettered",
    )
    assert b"no customer has" in dict(dead.headers)["dlq.reason"]


async def _public(method: str, path: str, **kwargs: object) -> httpx.Response:
    """A survey-link request as the customer's browser makes it: no credential. Waits out the per-address
    rate limit (429 with Retry-After) and tries again."""
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10, trust_env=False) as client:
        while True:
            response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
            if response.status_code != 429:
                return response
            await asyncio.sleep(float(response.headers["retry-after"]))


async def _survey_requested(customer_id: str) -> list | None:
    records = await read_topic(
        "crm.retention.v1", match=lambda r: r.key == customer_id.encode() and b"survey.requested" in r.value
    )
    return records or None


async def test_a_survey_touch_sends_a_one_time_link_answered_without_login(gateway: httpx.AsyncClient):
    customer = await create_customer(gateway)
    detractor = {
        "customer_id": customer["id"],
        "type": "survey",
        "survey": "nps",
        "score": 2,
        "initiated_by": "customer",
        "external_id": f"nps-{uuid.uuid4()}",
    }
    assert (await gateway.post("/api/v1/interactions", json=detractor)).status_code == 201
    # low_satisfaction: call_owner, then satisfaction_survey (e-mail, allowed): a link is sent
    [record] = await eventually(lambda: _survey_requested(customer["id"]), what="survey.requested")
    data = orjson.loads(record.value)["data"]
    assert data["channel"] == "email" and data["survey"] == "nps"
    path = f"/api/v1/surveys/respond/{data['token']}"

    question = await _public("GET", path)
    assert question.status_code == 200, question.text
    assert question.json()["dimensions"] == ["product", "service_support", "relationship"]
    assert customer["id"] not in question.text

    forged = data["token"][:-2] + ("AA" if not data["token"].endswith("AA") else "BB")
    refused = await _public("POST", f"/api/v1/surveys/respond/{forged}", json={"score": 10})
    assert refused.status_code == 404 and customer["id"] not in refused.text
    expired_token = survey_links.issue(DEV_SURVEY_SECRET, data["link_id"], int(datetime.now(UTC).timestamp()) - 1)
    expired = await _public("POST", f"/api/v1/surveys/respond/{expired_token}", json={"score": 10})
    assert expired.status_code == 410

    answered = await _public("POST", path, json={"score": 9, "dimensions": {"product": 8, "relationship": 10}})
    assert answered.status_code == 202, answered.text
    again = await _public("POST", path, json={"score": 0})
    assert again.status_code == 409

    async def survey_interaction() -> dict | None:
        response = await gateway.get(f"/api/v1/customers/{customer['id']}/interactions", params={"type": "survey"})
        return next((i for i in response.json()["items"] if i["score"] == 9), None)

    interaction = await eventually(survey_interaction, what="the answer recorded as a survey interaction")
    assert (interaction["survey"], interaction["initiated_by"]) == ("nps", "customer")
    # exactly one: the second post changed nothing
    response = await gateway.get(f"/api/v1/customers/{customer['id']}/interactions", params={"type": "survey"})
    assert [i["score"] for i in response.json()["items"]].count(9) == 1
    # its survey.answered is what rescores the customer
    answered_events = await eventually(
        lambda: read_topic(
            "crm.interaction.v1",
            match=lambda r: (
                r.key == customer["id"].encode()
                and interaction["id"].encode() in r.value
                and b"survey.answered" in r.value
            ),
        ),
        what="survey.answered for the interaction",
    )
    assert len(answered_events) == 1
