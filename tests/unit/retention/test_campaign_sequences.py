"""A campaign run as a multi-step sequence: each treated member gets an enrolment, the offer goes out as the
engine runs its first step (through the contact policy), a reminder after the wait unless the member
redeemed, and the report counts reached, blocked, pending, touches and cost as for a one-touch campaign."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from contracts.interaction import InteractionRecorded
from servicekit.unit_of_work import UnitOfWork
from services.retention.campaigns import service as campaigns
from services.retention.campaigns import stats
from services.retention.campaigns.models import CampaignMember, OfferRedemption
from services.retention.handlers import HANDLERS
from services.retention.member_tiers.models import MemberTier
from services.retention.models import metadata
from services.retention.reports.models import FactEvent
from services.retention.sequences import engine as sequence_engine
from services.retention.sequences.models import Enrolment
from services.retention.touches.models import ConsentReplica, Touch
from tests.unit.retention.events import received
from tests.unit.retention.test_campaigns import AUDIENCE, FakeScoring, _offer, scoring  # noqa: F401 (fixture)

SEQUENCE = {
    "steps": [
        {"id": "offer", "kind": "touch", "action": "win_back_offer", "template": "wb-offer"},
        {"id": "wait", "kind": "wait", "hours": 72, "until": ["purchased"]},
        {"id": "reminder", "kind": "touch", "action": "win_back_offer", "template": "wb-reminder"},
    ],
    "stop_when": {"purchased": True},
}


async def _events(db, event_type: str) -> list[dict]:
    async with db.sessions() as session:
        payloads = (await session.execute(select(metadata.tables["outbox"].c.payload))).scalars().all()
    return [e for e in (json.loads(p) for p in payloads) if e["type"] == event_type]


async def test_a_sequence_needs_a_touch_and_is_shown(app_db, scoring: FakeScoring):  # noqa: F811
    client, _ = app_db
    offer = await _offer(client)
    base = {"name": "Offer then reminder", "offer_id": offer["id"], "channel": "email", "segment_id": "seg_known"}
    no_touch = {"steps": [{"id": "call", "kind": "task", "action": "call_owner"}]}
    refused = await client.post("/campaigns", json={**base, "sequence": no_touch})
    assert refused.status_code == 422 and "sequence" in refused.text
    backwards = {"steps": [{"id": "a", "kind": "touch", "action": "win_back_offer"}, {"id": "b", "kind": "wait"}]}
    assert (await client.post("/campaigns", json={**base, "sequence": backwards})).status_code == 422
    created = await client.post("/campaigns", json={**base, "sequence": SEQUENCE})
    assert created.status_code == 201, created.text
    assert [s["id"] for s in created.json()["sequence"]["steps"]] == ["offer", "wait", "reminder"]
    assert (await client.get("/campaigns")).json()["total"] == 1


async def test_offer_then_a_reminder_unless_redeemed(app_db, scoring: FakeScoring):  # noqa: F811
    client, db = app_db
    offer = await _offer(client)
    body = {
        "name": "Offer then reminder",
        "offer_id": offer["id"],
        "channel": "email",
        "template": "winback-20",
        "segment_id": "seg_known",
        "holdout_share": 0.25,
        "starts_at": "2099-01-01T00:00:00Z",
        "sequence": SEQUENCE,
    }
    campaign = (await client.post("/campaigns", json=body)).json()
    groups = {c: stats.assign_group(campaign["id"], c, 0.25) for c in AUDIENCE}
    treated = sorted(c for c, g in groups.items() if g == stats.TREATED)
    assert len(treated) >= 3 and len(treated) < len(AUDIENCE)
    opted_out = treated[0]
    async with db.transaction() as session:
        session.add(ConsentReplica(customer_id=opted_out, version=1, channels={"email": "opt_out"}))

    launched = (await client.post(f"/campaigns/{campaign['id']}/launch")).json()
    assert (launched["status"], launched["treated"]) == ("launched", len(treated))
    assert await _events(db, "campaign.touch_requested") == []  # the engine sends the offers
    report = (await client.get(f"/campaigns/{campaign['id']}/report")).json()
    assert (report["pending"], report["reached"], report["blocked"], report["touches"]) == (len(treated), 0, 0, 0)
    async with db.sessions() as session:
        runs = list((await session.execute(select(Enrolment))).scalars())
        launched_at = (await campaigns.get_campaign(session=session, campaign_id=campaign["id"])).launched_at
    assert sorted(e.customer_id for e in runs) == treated  # the holdout runs nothing
    assert {e.reason for e in runs} == {f"campaign:{campaign['id']}"}

    async with db.transaction() as session:
        session.add(MemberTier(customer_id=treated[1], tier="gold", benefits=["free_shipping"], changed_at=launched_at))
    # the engine's first round sends the offer to every treated member the policy allows
    assert (await sequence_engine.run_due(db, batch_size=7, now=launched_at)).claimed == len(treated)
    sent = await _events(db, "campaign.touch_requested")
    reached = sorted(set(treated) - {opted_out})
    assert sorted(e["data"]["customer_id"] for e in sent) == reached
    assert {(e["data"]["step_id"], e["data"]["template"], e["data"]["offer_code"]) for e in sent} == {
        ("offer", "wb-offer", "winback-20")
    }
    assert {e["data"]["channel"] for e in sent} == {"email"}
    tiers = {e["data"]["customer_id"]: (e["data"]["member_tier"], e["data"]["member_benefits"]) for e in sent}
    assert tiers[treated[1]] == ("gold", ["free_shipping"]) and tiers[treated[2]] == (None, [])

    # one member redeems during the wait; at the end of the wait the others get the reminder, the buyer not
    buyer = reached[0]
    async with db.transaction() as session:
        session.add(
            FactEvent(event_id="o1", customer_id=buyer, kind="order", amount=80.0, at=launched_at + timedelta(hours=1))
        )
    assert (await sequence_engine.run_due(db, batch_size=50, now=launched_at + timedelta(hours=1))).claimed == 0
    later = launched_at + timedelta(hours=73)
    assert (await sequence_engine.run_due(db, batch_size=50, now=later)).claimed == len(treated)
    reminders = [e for e in await _events(db, "campaign.touch_requested") if e["data"]["step_id"] == "reminder"]
    assert sorted(e["data"]["customer_id"] for e in reminders) == reached[1:]
    assert {e["data"]["template"] for e in reminders} == {"wb-reminder"}
    async with db.sessions() as session:
        runs = {e.customer_id: e for e in (await session.execute(select(Enrolment))).scalars()}
        members = {m.customer_id: m for m in (await session.execute(select(CampaignMember))).scalars()}
        touches = list((await session.execute(select(Touch))).scalars())
    assert (runs[buyer].status, runs[buyer].stop_reason) == ("stopped", "purchased")
    assert {runs[c].status for c in reached[1:]} == {"completed"}
    assert (members[opted_out].verdict, members[opted_out].touches) == ("opted_out", 0)
    assert (members[buyer].verdict, members[buyer].touches) == ("allowed", 1)
    assert {members[c].touches for c in reached[1:]} == {2}
    blocked = [t for t in touches if not t.allowed]
    assert [(t.customer_id, t.verdict) for t in blocked] == [(opted_out, "opted_out")] * 2  # offer and reminder
    assert {t.reason for t in touches} == {f"campaign:{campaign['id']}"}

    report = (await client.get(f"/campaigns/{campaign['id']}/report")).json()
    n = len(treated)
    assert (report["reached"], report["blocked"], report["blocked_by"], report["pending"]) == (
        n - 1,
        1,
        {"opted_out": 1},
        0,
    )
    touches_sent = (n - 1) + (n - 2)
    assert (report["touches"], report["redeemed"]) == (touches_sent, 1)
    cost = touches_sent * 0.5 + 12.0
    assert report["cost"] == pytest.approx(cost)
    assert report["value_won_back"] == 80.0 and report["roi"] == pytest.approx((80.0 - cost) / cost)


def _purchase(customer_id: str, at, amount: float, code: str | None):
    data = InteractionRecorded(
        customer_id=customer_id,
        interaction_id=f"i-{customer_id}-{code}",
        type="purchase",
        occurred_at=at,
        amount=amount,
        currency="EUR",
        offer_code=code,
    )
    return received(data, "/crm/interaction")


async def test_an_order_carrying_the_offer_code_is_an_exact_redemption(app_db, scoring: FakeScoring):  # noqa: F811
    client, db = app_db
    offer = await _offer(client)
    body = {
        "name": "One touch",
        "offer_id": offer["id"],
        "channel": "email",
        "segment_id": "seg_known",
        "holdout_share": 0.25,
        "starts_at": "2099-01-01T00:00:00Z",
    }
    campaign = (await client.post("/campaigns", json=body)).json()
    treated = sorted(c for c in AUDIENCE if stats.assign_group(campaign["id"], c, 0.25) == stats.TREATED)
    await client.post(f"/campaigns/{campaign['id']}/launch")
    async with db.sessions() as session:
        launched_at = (await campaigns.get_campaign(session=session, campaign_id=campaign["id"])).launched_at
    day = timedelta(days=1)
    coded, uncoded, other_code, late = treated[:4]
    purchase = _purchase(coded, launched_at + day, 60.0, "winback-20")
    for event in (
        purchase,
        purchase,  # redelivered: one redemption
        _purchase(uncoded, launched_at + day, 40.0, None),  # attributed, as without codes
        _purchase(other_code, launched_at + day, 30.0, "spring-10"),  # redeems another offer, not this one
        _purchase(late, launched_at + 20 * day, 20.0, "winback-20"),  # after the offer's 14 days
    ):
        async with db.transaction() as session:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)
    async with db.sessions() as session:
        redemptions = list((await session.execute(select(OfferRedemption))).scalars())
    assert sorted((r.customer_id, r.offer_code) for r in redemptions) == sorted(
        [(coded, "winback-20"), (other_code, "spring-10"), (late, "winback-20")]
    )
    report = (await client.get(f"/campaigns/{campaign['id']}/report")).json()
    assert (report["redeemed"], report["redeemed_exact"]) == (2, 1)
    assert report["treated"]["value"] == 150.0  # every order in the window is value won back
