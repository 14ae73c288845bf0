"""Win-back campaigns through the retention API, with the scoring service's segments faked at the HTTP
edge: the offer catalogue, audience checks, the launch (holdout, consent-blocked touches, events) and the
report's numbers computed by hand."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from services.retention.campaigns import launch as campaign_launch
from services.retention.campaigns import service as campaigns
from services.retention.campaigns import stats
from services.retention.campaigns.audience import SegmentClient
from services.retention.campaigns.models import CampaignMember
from services.retention.models import metadata
from services.retention.replica.models import Customer, StatusChange
from services.retention.reports.models import FactEvent
from services.retention.touches.models import ConsentReplica, Touch

AUDIENCE = [f"c{i:02d}" for i in range(40)]


class FakeScoring:
    def __init__(self) -> None:
        self.saved: list[dict] = []
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        assert request.headers.get("x-crm-internal"), "calls to scoring are signed"
        if request.method == "POST" and request.url.path == "/segments":
            body = json.loads(request.content)
            if body["filter"] and body["filter"][0].get("field") == "nope":
                problem = {"errors": [{"field": "body.filter[0].field", "message": "unknown field"}]}
                return httpx.Response(422, json=problem)
            self.saved.append(body)
            return httpx.Response(201, json={"id": "seg_saved"})
        if request.url.path in ("/segments/seg_saved", "/segments/seg_known"):
            return httpx.Response(200, json={"id": request.url.path.rsplit("/", 1)[1]})
        if request.url.path.endswith("/customers") and request.url.params.get("format") == "csv":
            lines = ["customer_id,segment,status,value_tier"] + [f"{c},,churned,iron" for c in AUDIENCE]
            return httpx.Response(200, text="\n".join(lines) + "\n", headers={"content-type": "text/csv"})
        return httpx.Response(404, json={"title": "not found"})


@pytest.fixture
def scoring(monkeypatch: pytest.MonkeyPatch) -> FakeScoring:
    fake = FakeScoring()
    monkeypatch.setattr(
        campaigns,
        "segment_client",
        lambda settings: SegmentClient("http://scoring", timeout_s=5, transport=httpx.MockTransport(fake)),
    )
    return fake


OFFER = {
    "code": "winback-20",
    "name": "20% off the next order",
    "kind": "discount_percent",
    "value": 20,
    "cost_per_touch": 0.5,
    "cost_per_redemption": 12.0,
    "valid_days": 14,
}


async def _offer(client: httpx.AsyncClient) -> dict:
    response = await client.post("/offers", json=OFFER)
    assert response.status_code == 201, response.text
    return response.json()


async def test_offer_catalogue_validates_and_refuses_a_taken_code(app_db):
    client, _ = app_db
    offer = await _offer(client)
    assert (offer["kind"], offer["cost_per_redemption"], offer["active"]) == ("discount_percent", 12.0, True)
    again = await client.post("/offers", json=OFFER)
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "code"
    bad = await client.post("/offers", json={**OFFER, "code": "x2", "value": 150})
    assert bad.status_code == 422 and "value" in bad.text
    negative = await client.post("/offers", json={**OFFER, "code": "x3", "cost_per_touch": -1})
    assert negative.status_code == 422 and negative.json()["errors"][0]["field"] == "cost_per_touch"
    listed = (await client.get("/offers")).json()
    assert listed["total"] == 1
    retired = await client.post(f"/offers/{offer['id']}/retire")
    assert retired.json()["active"] is False
    assert (await client.get("/offers/nope")).status_code == 404


async def test_campaign_audience_checks(app_db, scoring: FakeScoring):
    client, _ = app_db
    offer = await _offer(client)
    base = {"name": "Win back lapsed", "offer_id": offer["id"], "channel": "email"}
    both = await client.post("/campaigns", json={**base, "segment_id": "seg_known", "filter": []})
    assert both.status_code == 422 and "segment_id" in both.text
    unknown = await client.post("/campaigns", json={**base, "segment_id": "seg_missing"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "segment_id"
    bad_filter = await client.post("/campaigns", json={**base, "filter": [{"field": "nope", "op": "eq", "value": 1}]})
    assert bad_filter.status_code == 422 and bad_filter.json()["errors"][0]["field"] == "filter[0].field"
    no_offer = await client.post("/campaigns", json={**base, "offer_id": "missing", "segment_id": "seg_known"})
    assert no_offer.status_code == 422 and no_offer.json()["errors"][0]["field"] == "offer_id"
    bad_channel = await client.post("/campaigns", json={**base, "channel": "pigeon", "segment_id": "seg_known"})
    assert bad_channel.status_code == 422
    too_big = await client.post("/campaigns", json={**base, "segment_id": "seg_known", "holdout_share": 0.9})
    assert too_big.status_code == 422 and too_big.json()["errors"][0]["field"] == "holdout_share"

    conditions = [{"field": "status", "op": "eq", "value": "churned"}]
    created = await client.post("/campaigns", json={**base, "filter": conditions})
    assert created.status_code == 201, created.text
    assert created.json()["segment_id"] == "seg_saved" and created.json()["status"] == "scheduled"
    assert scoring.saved[0]["filter"] == conditions
    # nothing was written for the refused requests
    assert (await client.get("/campaigns")).json()["total"] == 1


async def test_launch_report_and_idempotence(app_db, scoring: FakeScoring):
    client, db = app_db
    offer = await _offer(client)
    body = {
        "name": "Win back lapsed",
        "offer_id": offer["id"],
        "channel": "email",
        "template": "winback-20",
        "segment_id": "seg_known",
        "holdout_share": 0.25,
        "starts_at": "2099-01-01T00:00:00Z",  # far ahead: launched by hand here
    }
    campaign = (await client.post("/campaigns", json=body)).json()
    groups = {c: stats.assign_group(campaign["id"], c, 0.25) for c in AUDIENCE}
    treated = sorted(c for c, g in groups.items() if g == stats.TREATED)
    holdout = sorted(c for c, g in groups.items() if g == stats.HOLDOUT)
    assert treated and holdout
    opted_out, erased = treated[0], treated[1]
    async with db.transaction() as session:
        session.add(ConsentReplica(customer_id=opted_out, version=1, channels={"email": "opt_out"}))
        session.add(Customer(customer_id=erased, erased_at=campaigns.utc_now()))

    launched = await client.post(f"/campaigns/{campaign['id']}/launch")
    assert launched.status_code == 200, launched.text
    c = launched.json()
    assert c["status"] == "launched"
    assert (c["audience"], c["treated"], c["holdout"]) == (39, len(treated) - 1, len(holdout))
    assert (c["reached"], c["blocked"], c["blocked_by"]) == (len(treated) - 2, 1, {"opted_out": 1})
    # a second launch (a retry, the scheduler) changes nothing
    again = await client.post(f"/campaigns/{campaign['id']}/launch")
    assert again.json() == c
    assert (await client.post(f"/campaigns/{campaign['id']}/cancel")).status_code == 409

    async with db.sessions() as session:
        touches = list((await session.execute(select(Touch))).scalars())
        members = list((await session.execute(select(CampaignMember))).scalars())
        payloads = (await session.execute(select(metadata.tables["outbox"].c.payload))).scalars().all()
    assert len(members) == 39 and erased not in {m.customer_id for m in members}
    assert len(touches) == len(treated) - 1
    [blocked] = [t for t in touches if not t.allowed]
    assert (blocked.customer_id, blocked.verdict, blocked.channel) == (opted_out, "opted_out", "email")
    events = [json.loads(p) for p in payloads]
    sent = [e for e in events if e["type"] == "campaign.touch_requested"]
    assert sorted(e["data"]["customer_id"] for e in sent) == sorted(set(treated) - {opted_out, erased})
    assert {e["data"]["offer_code"] for e in sent} == {"winback-20"}
    [launch_event] = [e for e in events if e["type"] == "campaign.launched"]
    assert launch_event["subject"] == campaign["id"] and launch_event["data"]["blocked_by"] == {"opted_out": 1}

    blocked_members = await client.get(f"/campaigns/{campaign['id']}/members", params={"verdict": "opted_out"})
    assert [m["customer_id"] for m in blocked_members.json()["items"]] == [opted_out]

    # outcomes: two reached customers buy within the offer's validity (redeemed), one after it (won back,
    # not redeemed), one holdout customer buys, one holdout customer is reactivated by status, the
    # blocked one buys, one treated customer churns; one order before the launch counts for nothing
    async with db.sessions() as session:
        launched_at = (await campaigns.get_campaign(session=session, campaign_id=campaign["id"])).launched_at
    reached = sorted(set(treated) - {opted_out, erased})
    day = timedelta(days=1)
    orders = [
        (reached[0], launched_at + day, 100.0),
        (reached[1], launched_at + 2 * day, 50.0),
        (reached[2], launched_at + 20 * day, 30.0),
        (opted_out, launched_at + day, 10.0),
        (holdout[0], launched_at + day, 40.0),
        (reached[3], launched_at - day, 999.0),  # before launch
        (reached[4], launched_at + 40 * day, 999.0),  # after the 30-day window
    ]
    async with db.transaction() as session:
        for i, (customer_id, at, amount) in enumerate(orders):
            session.add(FactEvent(event_id=f"o{i}", customer_id=customer_id, kind="order", amount=amount, at=at))
        session.add(StatusChange(event_id="s1", customer_id=holdout[1], status="won_back", at=launched_at + day))
        session.add(StatusChange(event_id="s2", customer_id=reached[5], status="churned", at=launched_at + day))

    report = (await client.get(f"/campaigns/{campaign['id']}/report")).json()
    n_treated, n_holdout = len(treated) - 1, len(holdout)
    assert (report["audience"], report["reached"], report["blocked"]) == (39, n_treated - 1, 1)
    assert report["redeemed"] == 2
    assert report["treated"] == {
        "customers": n_treated,
        "won_back": 4,
        "churned": 1,
        "value": 190.0,
        "won_back_rate": 4 / n_treated,
    }
    assert report["holdout"]["won_back"] == 2 and report["holdout"]["value"] == 40.0
    cost = (n_treated - 1) * 0.5 + 2 * 12.0
    assert report["cost"] == pytest.approx(cost)
    assert report["value_won_back"] == 190.0
    assert report["roi"] == pytest.approx((190 - cost) / cost)
    assert report["incremental_value"] == pytest.approx(round(190 - 40 / n_holdout * n_treated, 2))
    expected = stats.uplift(4, n_treated, 2, n_holdout)
    assert expected is not None
    assert report["uplift"]["difference"] == pytest.approx(expected.difference)
    assert (report["uplift"]["low"], report["uplift"]["high"]) == pytest.approx((expected.low, expected.high))
    assert report["uplift"]["method"] == "newcombe-wilson"


async def test_scheduled_campaigns_launch_when_due_and_cancel_before(app_db, scoring: FakeScoring):
    client, db = app_db
    offer = await _offer(client)
    base = {"name": "w", "offer_id": offer["id"], "channel": "sms", "segment_id": "seg_known"}
    due = (await client.post("/campaigns", json={**base, "starts_at": "2000-01-01T00:00:00Z"})).json()
    later = (await client.post("/campaigns", json={**base, "starts_at": "2099-01-01T00:00:00Z"})).json()
    cancelled = (await client.post("/campaigns", json={**base, "starts_at": "2000-01-01T00:00:00Z"})).json()
    assert (await client.post(f"/campaigns/{cancelled['id']}/cancel")).json()["status"] == "cancelled"
    settings = client._transport.app.state.settings  # type: ignore[attr-defined]
    assert await campaign_launch.launch_due(db, settings) == 1
    assert (await client.get(f"/campaigns/{due['id']}")).json()["status"] == "launched"
    assert (await client.get(f"/campaigns/{later['id']}")).json()["status"] == "scheduled"
    assert (await client.post(f"/campaigns/{cancelled['id']}/launch")).status_code == 409
    assert await campaign_launch.launch_due(db, settings) == 0  # nothing launches twice
    pending = (await client.get(f"/campaigns/{later['id']}/report")).json()
    assert pending["uplift"] is None and pending["audience"] == 0
    assert (await client.get("/campaigns/nope/report")).status_code == 404


async def test_member_tiers_narrow_the_audience(app_db, scoring: FakeScoring):
    from services.retention.member_tiers.models import MemberTier

    client, db = app_db
    offer = await _offer(client)
    async with db.transaction() as session:
        session.add(
            MemberTier(
                customer_id="c00",
                tier="gold",
                benefits=["free_shipping", "priority_support"],
                changed_at=campaigns.utc_now(),
            )
        )
        session.add(MemberTier(customer_id="c01", tier="silver", benefits=[], changed_at=campaigns.utc_now()))
        session.add(MemberTier(customer_id="c02", tier=None, benefits=[], changed_at=campaigns.utc_now()))
    body = {
        "name": "gold members",
        "offer_id": offer["id"],
        "channel": "email",
        "segment_id": "seg_known",
        "member_tiers": ["gold", "none", "gold"],
        "holdout_share": 0,
    }
    campaign = (await client.post("/campaigns", json=body)).json()
    assert campaign["member_tiers"] == ["gold", "none"]
    launched = (await client.post(f"/campaigns/{campaign['id']}/launch")).json()
    # gold, and every customer below the lowest tier or without a known tier; not the silver one
    assert launched["audience"] == len(AUDIENCE) - 1
    members = (await client.get(f"/campaigns/{campaign['id']}/members", params={"limit": 200})).json()
    assert "c01" not in {m["customer_id"] for m in members["items"]}
    # each offer carries the member's tier and its benefits for the sender to use
    async with db.sessions() as session:
        payloads = (await session.execute(select(metadata.tables["outbox"].c.payload))).scalars().all()
    sent = {
        e["data"]["customer_id"]: e["data"]
        for e in map(json.loads, payloads)
        if e["type"] == "campaign.touch_requested"
    }
    assert (sent["c00"]["member_tier"], sent["c00"]["member_benefits"]) == (
        "gold",
        ["free_shipping", "priority_support"],
    )
    assert (sent["c03"]["member_tier"], sent["c03"]["member_benefits"]) == (None, [])
    bad = await client.post("/campaigns", json={**body, "member_tiers": [""]})
    assert bad.status_code == 422
