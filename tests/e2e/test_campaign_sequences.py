"""A win-back campaign run as a multi-step sequence, end to end on real Kafka and PostgreSQL through the
gateway (docs/campaigns.md#a-campaign-as-a-sequence).

Churned customers form the audience through a saved filter; the launch holds a share back and enrols every
treated customer in the campaign's sequence: the offer, a survey link, a wait that ends early on a
purchase, and a reminder unless the customer bought. The sequence engine (its own loop, every few seconds
on the platform) sends each offer through consent and the contact policy as a signed webhook; a customer
who opted out of e-mail is blocked and recorded, and their run stops. One customer answers the survey
through its link (no login) and redeems the offer with an ERP order carrying its code: their run stops and
they get no reminder; the others get the reminder after the wait. The holdout is enrolled in nothing. The
report shows pending, touches, cost, revenue (one win-back), ROI and the uplift's interval.

The wait is short so the reminder falls due within the test; every bound below is a liveness bound.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from contracts.erp import ErpOrderPlaced
from contracts.topics import ERP_ORDERS
from servicekit.events.envelope import CloudEvent
from services.retention.campaigns import stats
from services.retention.webhooks.signing import verify
from tests.e2e.helpers import OPT_OUT_OF_EMAIL, create_customer, eventually, produce, put_consent, read_topic
from tests.e2e.test_campaigns import _campaign_with_both_groups, _ok, subscribe_to_touches
from tests.e2e.test_consent import _public
from tests.e2e.test_retention_loop import SECRET, Receiver, receivers  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e
AUDIENCE = 8
WAIT_S = 60  # long enough for the redeeming customer's order to reach retention before the reminder
SEQUENCE = {
    "steps": [
        {"id": "offer", "kind": "touch", "action": "win_back_offer", "template": "wb-seq-offer", "on_blocked": "stop"},
        {"id": "survey", "kind": "touch", "action": "satisfaction_survey"},
        {"id": "wait", "kind": "wait", "hours": WAIT_S / 3600, "until": ["purchased"]},
        {"id": "reminder", "kind": "touch", "action": "win_back_offer", "template": "wb-seq-reminder"},
    ],
    "stop_when": {"purchased": True},
}


def _touches_of(receiver: Receiver, campaign_id: str) -> list[tuple[dict[str, str], bytes, dict[str, Any]]]:
    out = []
    for headers, raw in receiver.requests:
        event = orjson.loads(raw)
        if event["type"] == "campaign.touch_requested" and event["data"]["campaign_id"] == campaign_id:
            out.append((headers, raw, event["data"]))
    return out


async def _enrolments(gateway: httpx.AsyncClient, customer_id: str, reason: str) -> list[dict[str, Any]]:
    items = (await _ok(await gateway.get(f"/api/v1/customers/{customer_id}/enrolments")))["items"]
    return [e for e in items if e["reason"] == reason]


async def test_a_sequence_campaign_sends_the_offer_and_a_reminder_unless_redeemed(
    gateway: httpx.AsyncClient,
    receivers,  # noqa: F811
):
    good, _ = receivers
    hook = await subscribe_to_touches(gateway, good.port)
    tag = f"e2e-cseq-{uuid.uuid4().hex[:8]}"
    refs: dict[str, str] = {}
    for i in range(AUDIENCE):
        ref = f"{tag}-{i}"
        customer = await create_customer(
            gateway,
            segment=tag,
            external_ref=ref,
            status="churned",
            churn_reason="price",
            churned_at=str(datetime.now(UTC).date() - timedelta(days=30)),
        )
        refs[customer["id"]] = ref
    ids = list(refs)
    offer = await _ok(
        await gateway.post(
            "/api/v1/offers",
            json={
                "code": f"wbs-{uuid.uuid4().hex[:8]}",
                "name": "20% off, then a reminder",
                "kind": "discount_percent",
                "value": 20,
                "cost_per_touch": 0.5,
                "cost_per_redemption": 10.0,
                "valid_days": 14,
            },
        ),
        201,
    )
    conditions = [{"field": "segment", "op": "eq", "value": tag}, {"field": "status", "op": "eq", "value": "churned"}]
    body = {
        "name": f"Win back {tag} in steps",
        "offer_id": offer["id"],
        "channel": "email",
        "template": "wb-seq",
        "filter": conditions,
        "holdout_share": 0.3,
        "starts_at": (datetime.now(UTC) + timedelta(days=365)).isoformat(),  # launched by hand below
        "sequence": SEQUENCE,
    }
    campaign, treated, holdout = await _campaign_with_both_groups(gateway, body, ids)
    reason = f"campaign:{campaign['id']}"
    assert [s["id"] for s in campaign["sequence"]["steps"]] == ["offer", "survey", "wait", "reminder"]

    async def counted() -> bool:
        count = await _ok(await gateway.get(f"/api/v1/segments/{campaign['segment_id']}/count"))
        return count["customers"] == AUDIENCE

    await eventually(counted, what="scoring to hold the churned customers in the segment")

    # a treated customer opts out of e-mail before the launch
    opted_out, redeemer = treated[0], treated[1]
    await put_consent(gateway, opted_out, OPT_OUT_OF_EMAIL)

    launched = await _ok(await gateway.post(f"/api/v1/campaigns/{campaign['id']}/launch"))
    assert (launched["status"], launched["audience"], launched["treated"], launched["holdout"]) == (
        "launched",
        AUDIENCE,
        len(treated),
        len(holdout),
    )
    # the touches come from the engine, after the launch: the record itself counts none
    assert (launched["reached"], launched["blocked"]) == (0, 0)
    for customer_id in holdout:
        assert await _enrolments(gateway, customer_id, reason) == []  # the holdout runs nothing

    # the engine sends every offer: one signed webhook per reached customer, none for the opted-out one
    reached = sorted(set(treated) - {opted_out})

    async def offers_out() -> list | None:
        mine = [t for t in _touches_of(good, campaign["id"]) if t[2]["step_id"] == "offer"]
        return mine if len(mine) >= len(reached) else None

    offers = await eventually(offers_out, timeout_s=60, what="the campaign's offers as webhooks")
    assert sorted(data["customer_id"] for _, _, data in offers) == reached
    for headers, raw, data in offers:
        assert verify(SECRET, headers["x-crm-signature"], raw, now=int(time.time()))
        assert (data["offer_code"], data["channel"], data["template"]) == (offer["code"], "email", "wb-seq-offer")

    # the redeeming customer answers the survey through its one-time link, without a login ...
    async def survey_link() -> list | None:
        records = await read_topic(
            "crm.retention.v1", match=lambda r: r.key == redeemer.encode() and b"survey.requested" in r.value
        )
        return records or None

    [record] = await eventually(survey_link, what="the campaign's survey link to the redeemer")
    link = orjson.loads(record.value)["data"]
    assert (link["channel"], link["customer_id"]) == ("email", redeemer), link
    answered = await _public("POST", f"/api/v1/surveys/respond/{link['token']}", json={"score": 9})
    assert answered.status_code == 202, answered.text
    assert (await _public("POST", f"/api/v1/surveys/respond/{link['token']}", json={"score": 1})).status_code == 409

    async def survey_recorded() -> dict | None:
        response = await gateway.get(f"/api/v1/customers/{redeemer}/interactions", params={"type": "survey"})
        return next(iter(response.json()["items"]), None)

    interaction = await eventually(survey_recorded, what="the answer as a survey interaction")
    assert (interaction["score"], interaction["initiated_by"]) == (9, "customer")

    # ... and orders through the ERP with the offer's code, inside the wait
    order = ErpOrderPlaced(
        order_id=f"{refs[redeemer]}-O1",
        customer_ref=refs[redeemer],
        amount="150.00",
        currency="EUR",
        quantity=1,
        placed_at=datetime.now(UTC),
        offer_code=offer["code"],
    )
    await produce(ERP_ORDERS, [(refs[redeemer].encode(), CloudEvent.wrap(order, source="/erp/e2e").to_json())])

    async def redeemer_stopped() -> dict[str, Any] | None:
        [run] = await _enrolments(gateway, redeemer, reason)
        return run if run["status"] != "active" else None

    run = await eventually(redeemer_stopped, timeout_s=WAIT_S, what="the order to stop the redeemer's run")
    assert (run["status"], run["stop_reason"]) == ("stopped", "purchased"), run
    assert {"step": "offer", "result": "sent"}.items() <= next(s for s in run["trail"] if "result" in s).items(), run
    assert "reminder" not in {step["step"] for step in run["trail"]}, run
    [blocked_run] = await _enrolments(gateway, opted_out, reason)
    assert (blocked_run["status"], blocked_run["stop_reason"]) == ("stopped", "blocked:offer"), blocked_run

    # the others get the reminder once the wait is over; the redeemer does not
    reminded = sorted(set(reached) - {redeemer})

    async def reminders_out() -> list | None:
        mine = [t for t in _touches_of(good, campaign["id"]) if t[2]["step_id"] == "reminder"]
        return mine if len(mine) >= len(reminded) else None

    reminders = await eventually(reminders_out, timeout_s=WAIT_S + 90, what="the reminders after the wait")
    assert sorted(data["customer_id"] for _, _, data in reminders) == reminded
    for headers, raw, data in reminders:
        assert verify(SECRET, headers["x-crm-signature"], raw, now=int(time.time()))
        assert (data["offer_code"], data["template"]) == (offer["code"], "wb-seq-reminder")
    for customer_id in reminded:
        [done] = await _enrolments(gateway, customer_id, reason)
        assert done["status"] == "completed", done
    # the block is on the customer's record with its reason; nobody in the holdout was contacted
    touches = (await _ok(await gateway.get(f"/api/v1/customers/{opted_out}/touches")))["items"]
    assert [(t["allowed"], t["verdict"], t["channel"]) for t in touches if t["reason"] == reason] == [
        (False, "opted_out", "email")
    ]
    assert {data["customer_id"] for _, _, data in _touches_of(good, campaign["id"])}.isdisjoint(holdout)

    async def settled() -> dict[str, Any] | None:
        report = await _ok(await gateway.get(f"/api/v1/campaigns/{campaign['id']}/report"))
        return report if report["redeemed"] == 1 and report["pending"] == 0 else None

    report = await eventually(settled, timeout_s=60, what="the order in the campaign report")
    n = len(treated)
    sent = len(reached) + len(reminded)  # every offer and every reminder
    assert (report["audience"], report["pending"], report["touches"]) == (AUDIENCE, 0, sent)
    assert (report["reached"], report["blocked"], report["blocked_by"]) == (n - 1, 1, {"opted_out": 1})
    assert report["redeemed_exact"] == 1
    assert (report["treated"]["customers"], report["treated"]["won_back"]) == (n, 1)
    assert (report["holdout"]["customers"], report["holdout"]["won_back"]) == (len(holdout), 0)
    assert report["value_won_back"] == 150.0 and report["treated"]["value"] == 150.0
    cost = sent * 0.5 + 10.0
    assert report["cost"] == pytest.approx(cost)
    assert report["roi"] == pytest.approx((150.0 - cost) / cost)
    expected = stats.uplift(1, n, 0, len(holdout))
    assert expected is not None
    assert report["uplift"]["difference"] == pytest.approx(1 / n)
    assert (report["uplift"]["low"], report["uplift"]["high"]) == pytest.approx((expected.low, expected.high))
    assert (await gateway.delete(f"/api/v1/webhooks/{hook['id']}")).status_code == 204
