"""The loyalty points ledger: routes, idempotency, refusals, tier events, inbound ERP events, erasure."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from contracts.erp import ErpPointsEarned, ErpPointsRedeemed, PointsEvent
from servicekit.events.envelope import CloudEvent, Received
from servicekit.inbox import PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.customer.points.handlers import on_points
from services.customer.points.models import PointsAccount, PointsEntry


def _url(customer: dict) -> str:
    return f"/customers/{customer['id']}/points"


async def _book(api, customer: dict, **body: object):
    return await api.client.post(_url(customer), json={"source": "erp", **body})


async def test_entries_move_the_balance_and_a_replayed_reference_changes_nothing(api):
    customer = await api.create()
    earned = await _book(api, customer, kind="earn", amount=400, source_ref="INV-1", reason="purchase")
    assert earned.status_code == 201, earned.text
    assert earned.json()["balance"] == 400 and earned.json()["replayed"] is False
    replay = await _book(api, customer, kind="earn", amount=400, source_ref="INV-1", reason="purchase")
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    assert replay.json()["entry"]["id"] == earned.json()["entry"]["id"] and replay.json()["balance"] == 400
    redeemed = await _book(api, customer, kind="redeem", amount=150, source_ref="RW-1")
    assert redeemed.status_code == 201 and redeemed.json()["balance"] == 250
    adjusted = await _book(api, customer, amount=-50, source_ref="ADJ-1", source="api", reason="correction")
    assert adjusted.status_code == 201 and adjusted.json()["balance"] == 200

    got = (await api.client.get(_url(customer), params={"limit": 2})).json()
    assert (got["balance"], got["lifetime_points"], got["total"]) == (200, 350, 3)
    assert [(i["kind"], i["amount"], i["balance_after"]) for i in got["items"]] == [
        ("adjust", -50, 200),
        ("redeem", 150, 250),
    ]
    assert got["tier"]["code"] == "member" and got["next_tier"]["code"] == "silver"
    async with api.database.sessions() as session:
        entries = (await session.execute(select(PointsEntry.amount))).scalars().all()
        account = await session.get(PointsAccount, customer["id"])
    # the running balance equals the sum of the ledger (redeem and expire are stored positive)
    assert account is not None and account.balance == 400 - 150 - 50 and sorted(entries) == [-50, 150, 400]


async def test_redeeming_or_expiring_beyond_the_balance_is_refused_and_writes_nothing(api):
    customer = await api.create()
    await _book(api, customer, kind="earn", amount=100, source_ref="INV-2")
    for kind, amount in (("redeem", 101), ("expire", 500), ("adjust", -101)):
        refused = await _book(api, customer, kind=kind, amount=amount, source_ref=f"X-{kind}")
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["type"].endswith(":insufficient_points")
        assert [e["field"] for e in problem["errors"]] == ["amount"]
    got = (await api.client.get(_url(customer))).json()
    assert got["balance"] == 100 and got["total"] == 1


async def test_a_reference_booked_as_another_entry_or_a_bad_amount_is_refused(api):
    customer, other = await api.create(), await api.create()
    await _book(api, customer, kind="earn", amount=10, source_ref="INV-3")
    for who, body in ((customer, {"kind": "earn", "amount": 11}), (other, {"kind": "earn", "amount": 10})):
        reused = await _book(api, who, source_ref="INV-3", **body)
        assert reused.status_code == 409 and [e["field"] for e in reused.json()["errors"]] == ["source_ref"]
    for body in ({"kind": "earn", "amount": 0}, {"kind": "adjust", "amount": 0}, {"kind": "gift", "amount": 1}):
        bad = await _book(api, customer, source_ref="INV-4", **body)
        assert bad.status_code == 422, bad.text
    assert (await api.client.get("/customers/nobody/points")).status_code == 404
    assert (await _book(api, {"id": "nobody"}, kind="earn", amount=1, source_ref="Z")).status_code == 404


async def test_crossing_a_threshold_emits_one_tier_change_with_codes_only(api):
    customer = await api.create(external_ref="ERP-TIER", email="t@example.com")
    await _book(api, customer, kind="earn", amount=600, source_ref="INV-5")
    await _book(api, customer, kind="earn", amount=600, source_ref="INV-6")
    await _book(api, customer, kind="redeem", amount=1200, source_ref="RW-6")  # the tier follows lifetime points
    events = await api.events("loyalty.tier_changed")
    assert [(e["data"]["previous_tier"], e["data"]["tier"]) for e in events] == [(None, "member"), ("member", "silver")]
    silver = events[1]
    assert silver["subject"] == customer["id"]
    assert silver["data"]["benefits"] == ["points_on_purchase", "free_shipping"]
    assert (silver["data"]["lifetime_points"], silver["data"]["balance"]) == (1200, 1200)
    assert "ERP-TIER" not in str(events) and "t@example.com" not in str(events)
    got = (await api.client.get(_url(customer))).json()
    assert got["tier"]["code"] == "silver" and got["balance"] == 0


async def test_a_customer_without_entries_has_no_tier(api):
    customer = await api.create()
    got = (await api.client.get(_url(customer))).json()
    assert (got["balance"], got["tier"], got["items"]) == (0, None, [])


def _inbound(event: PointsEvent) -> Received[PointsEvent]:
    return Received(envelope=CloudEvent.wrap(event, source="/erp"), data=event)


async def test_erp_events_book_once_and_refusals_are_poison(api):
    customer = await api.create(external_ref="ERP-P")
    now = datetime.now(UTC)
    earned = ErpPointsEarned(customer_ref="ERP-P", document_id="SO-1", points=250, occurred_at=now)
    async with api.database.sessions() as session:
        await on_points(UnitOfWork(session), _inbound(earned))
        await on_points(UnitOfWork(session), _inbound(earned))  # duplicate delivery
        await session.commit()
        with pytest.raises(PoisonEvent, match="no customer has"):
            await on_points(UnitOfWork(session), _inbound(earned.model_copy(update={"customer_ref": "ERP-NOBODY"})))
        await session.rollback()
        too_much = ErpPointsRedeemed(customer_ref="ERP-P", document_id="RD-1", points=251, occurred_at=now)
        with pytest.raises(PoisonEvent, match="more points than the balance"):
            await on_points(UnitOfWork(session), _inbound(too_much))
        await session.rollback()
        count = (await session.execute(select(func.count()).select_from(PointsEntry))).scalar_one()
    assert count == 1
    got = (await api.client.get(_url(customer))).json()
    assert got["balance"] == 250 and got["items"][0]["source"] == "erp" and got["items"][0]["source_ref"] == "SO-1"


async def test_erasure_removes_the_ledger_and_refuses_new_entries(api):
    customer = await api.create()
    await _book(api, customer, kind="earn", amount=70, source_ref="INV-7")
    assert (await api.client.delete(f"/customers/{customer['id']}")).status_code in (200, 202, 204)
    async with api.database.sessions() as session:
        for model in (PointsEntry, PointsAccount):
            where = model.customer_id == customer["id"]  # type: ignore[attr-defined]
            assert (await session.execute(select(func.count()).select_from(model).where(where))).scalar_one() == 0
    refused = await _book(api, customer, kind="earn", amount=1, source_ref="INV-8")
    assert refused.status_code == 409 and refused.json()["type"].endswith(":erased")
