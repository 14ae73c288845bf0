"""A win-back campaign end to end on real Kafka and PostgreSQL, through the gateway (docs/campaigns.md).

Churned customers form the audience through a segment filter that retention saves in the scoring
service; the launch holds a share back, blocks the touch of a customer who opted out of e-mail (recorded
with its reason), and sends the others the offer as signed webhooks; a purchase through an ERP order and a
status change to won_back are the outcomes; the report shows the numbers.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from contracts.erp import ErpOrderPlaced
from contracts.topics import ERP_ORDERS
from servicekit.events.envelope import CloudEvent
from services.retention.campaigns import stats
from services.retention.webhooks.signing import verify
from tests.e2e.conftest import token
from tests.e2e.helpers import OPT_OUT_OF_EMAIL, create_customer, eventually, produce, put_consent
from tests.e2e.test_retention_loop import SECRET, Receiver, receivers  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e
AUDIENCE = 10


async def _ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def _campaign_with_both_groups(gateway: httpx.AsyncClient, body: dict, ids: list[str]) -> tuple[dict, list, list]:
    """A scheduled campaign whose draw puts at least three customers in the treated group and one in the
    holdout (the draw is a hash of the campaign id: an unsuitable one is cancelled and another created)."""
    for _ in range(20):
        campaign = await _ok(await gateway.post("/api/v1/campaigns", json=body), 201)
        groups = {c: stats.assign_group(campaign["id"], c, body["holdout_share"]) for c in ids}
        treated = sorted(c for c in ids if groups[c] == stats.TREATED)
        holdout = sorted(c for c in ids if groups[c] == stats.HOLDOUT)
        if len(treated) >= 3 and holdout:
            return campaign, treated, holdout
        await _ok(await gateway.post(f"/api/v1/campaigns/{campaign['id']}/cancel"))
    raise AssertionError("no suitable draw in 20 campaigns")


async def subscribe_to_touches(gateway: httpx.AsyncClient, port: int) -> dict:
    """A signed webhook on the local receiver for campaign.touch_requested (the organisation's delivery system)."""
    return await _ok(
        await gateway.post(
            "/api/v1/webhooks",
            json={
                "url": f"http://127.0.0.1:{port}/hook",
                "event_types": ["campaign.touch_requested"],
                "secret": SECRET,
            },
        ),
        201,
    )


async def test_a_win_back_campaign_from_audience_to_report(gateway: httpx.AsyncClient, receivers):  # noqa: F811
    good, _ = receivers
    hook = await subscribe_to_touches(gateway, good.port)
    tag = f"e2e-camp-{uuid.uuid4().hex[:8]}"
    refs = {}
    ids = []
    for i in range(AUDIENCE):
        ref = f"{tag}-{i}"
        customer = await create_customer(
            gateway,
            segment=tag,
            external_ref=ref,
            status="churned",
            churn_reason="competitor",
            churned_at=str(datetime.now(UTC).date() - timedelta(days=40)),
        )
        ids.append(customer["id"])
        refs[customer["id"]] = ref

    offer = await _ok(
        await gateway.post(
            "/api/v1/offers",
            json={
                "code": f"wb-{uuid.uuid4().hex[:8]}",
                "name": "15% off your next order",
                "kind": "discount_percent",
                "value": 15,
                "cost_per_touch": 0.25,
                "cost_per_redemption": 8.0,
                "valid_days": 14,
            },
        ),
        201,
    )
    conditions = [{"field": "segment", "op": "eq", "value": tag}, {"field": "status", "op": "eq", "value": "churned"}]
    body = {
        "name": f"Win back {tag}",
        "offer_id": offer["id"],
        "channel": "email",
        "template": "winback-15",
        "filter": conditions,
        "holdout_share": 0.4,
        "starts_at": (datetime.now(UTC) + timedelta(days=365)).isoformat(),  # launched by hand below
    }
    campaign, treated, holdout = await _campaign_with_both_groups(gateway, body, ids)
    segment = campaign["segment_id"]
    # the filter became a segment in the scoring service; wait until scoring has every customer in it
    seg = await _ok(await gateway.get(f"/api/v1/segments/{segment}"))
    assert seg["filter"] == conditions

    async def counted() -> bool:
        return (await _ok(await gateway.get(f"/api/v1/segments/{segment}/count")))["customers"] == AUDIENCE

    await eventually(counted, what="scoring to hold the churned customers in the segment")

    # a treated customer opts out of e-mail; retention applies it before the launch
    opted_out = treated[0]
    await put_consent(gateway, opted_out, OPT_OUT_OF_EMAIL)

    launched = await _ok(await gateway.post(f"/api/v1/campaigns/{campaign['id']}/launch"))
    assert launched["status"] == "launched"
    assert (launched["audience"], launched["treated"], launched["holdout"]) == (AUDIENCE, len(treated), len(holdout))
    assert (launched["reached"], launched["blocked"], launched["blocked_by"]) == (
        len(treated) - 1,
        1,
        {"opted_out": 1},
    )
    assert await _ok(await gateway.post(f"/api/v1/campaigns/{campaign['id']}/launch")) == launched  # a retry

    # the block is recorded on the customer, with the campaign as its reason
    touches = (await _ok(await gateway.get(f"/api/v1/customers/{opted_out}/touches")))["items"]
    [blocked] = [t for t in touches if t["reason"] == f"campaign:{campaign['id']}"]
    assert (blocked["allowed"], blocked["verdict"], blocked["channel"]) == (False, "opted_out", "email")
    members = await _ok(
        await gateway.get(f"/api/v1/campaigns/{campaign['id']}/members", params={"verdict": "opted_out"})
    )
    assert [m["customer_id"] for m in members["items"]] == [opted_out]

    # every reached customer's offer arrives as a signed webhook; none for the blocked or the holdout
    reached = sorted(set(treated) - {opted_out})

    async def delivered() -> list | None:
        mine = [
            (h, b)
            for h, b in good.requests
            if orjson.loads(b)["type"] == "campaign.touch_requested"
            and orjson.loads(b)["data"]["campaign_id"] == campaign["id"]
        ]
        return mine if len(mine) >= len(reached) else None

    deliveries = await eventually(delivered, timeout_s=60, what="the campaign's webhooks")
    assert sorted(orjson.loads(b)["data"]["customer_id"] for _, b in deliveries) == reached
    for headers, raw in deliveries:
        assert verify(SECRET, headers["x-crm-signature"], raw, now=int(time.time()))
        data = orjson.loads(raw)["data"]
        assert (data["offer_code"], data["channel"], data["template"]) == (offer["code"], "email", "winback-15")

    # outcomes: one reached customer orders through the ERP (redeemed), another is marked won back
    buyer, returned = reached[0], reached[1]
    order = ErpOrderPlaced(
        order_id=f"{refs[buyer]}-O1",
        customer_ref=refs[buyer],
        amount="120.00",
        currency="EUR",
        quantity=1,
        placed_at=datetime.now(UTC),
        offer_code=offer["code"],  # the order redeems the offer: an exact redemption
    )
    await produce(ERP_ORDERS, [(refs[buyer].encode(), CloudEvent.wrap(order, source="/erp/e2e").to_json())])
    await _ok(await gateway.post(f"/api/v1/customers/{returned}/status", json={"status": "won_back"}))

    async def settled() -> dict | None:
        report = await _ok(await gateway.get(f"/api/v1/campaigns/{campaign['id']}/report"))
        return report if report["redeemed"] == 1 and report["treated"]["won_back"] == 2 else None

    report = await eventually(settled, timeout_s=60, what="the order and the status change in the report")
    n = len(treated)
    assert (report["audience"], report["reached"], report["blocked"]) == (AUDIENCE, n - 1, 1)
    assert (report["redeemed_exact"], report["touches"], report["pending"]) == (1, n - 1, 0)
    assert report["treated"]["customers"] == n and report["holdout"]["customers"] == len(holdout)
    assert report["treated"]["value"] == 120.0 and report["value_won_back"] == 120.0
    assert report["holdout"]["won_back"] == 0 and report["holdout"]["value"] == 0.0
    cost = (n - 1) * 0.25 + 8.0
    assert report["cost"] == pytest.approx(cost)
    assert report["roi"] == pytest.approx((120.0 - cost) / cost)
    assert report["incremental_value"] == 120.0
    lift = report["uplift"]
    expected = stats.uplift(2, n, 0, len(holdout))
    assert expected is not None
    assert lift["difference"] == pytest.approx(2 / n)
    assert (lift["low"], lift["high"]) == pytest.approx((expected.low, expected.high))
    assert lift["low"] <= lift["difference"] <= lift["high"] and lift["method"] == "newcombe-wilson"

    # who may see it: a manager reads the report (aggregates), not the member list; an agent neither
    manager = {"Authorization": f"Bearer {token('manager', 'manager-camp')}"}
    agent = {"Authorization": f"Bearer {token('agent', 'agent-camp')}"}
    assert (await gateway.get(f"/api/v1/campaigns/{campaign['id']}/report", headers=manager)).status_code == 200
    assert (await gateway.get(f"/api/v1/campaigns/{campaign['id']}/members", headers=manager)).status_code == 403
    assert (await gateway.get(f"/api/v1/campaigns/{campaign['id']}/report", headers=agent)).status_code == 403
    assert (await gateway.post("/api/v1/offers", json={}, headers=manager)).status_code == 403
    assert (await gateway.delete(f"/api/v1/webhooks/{hook['id']}")).status_code == 204
