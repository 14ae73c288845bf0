"""Consent per channel and contact preferences: API, bulk import, inbound ERP events, audit trail, erasure."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from contracts.common import ConsentSource, ConsentStatus, ContactChannel
from contracts.erp import ErpConsentChanged
from servicekit.events.envelope import CloudEvent, Received
from servicekit.inbox import PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.customer.consent.handlers import on_consent_changed
from services.customer.consent.models import Consent, ConsentChange, ContactProfile


def _at(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()


async def test_put_sets_channels_and_preferences_and_get_reads_them(api):
    customer = await api.create(email="x@example.com", external_ref="ERP-1")
    body = {
        "channels": {
            "email": {"status": "opt_out", "legal_basis": "consent", "source": "web_form"},
            "phone": {"status": "opt_in", "legal_basis": "legitimate_interest"},
        },
        "timezone": "Europe/Berlin",
        "frequency_cap": {"max_touches": 2, "window_days": 7},
        "quiet_hours": {"start": "21:00", "end": "08:00"},
    }
    response = await api.client.put(f"/customers/{customer['id']}/consent", json=body)
    assert response.status_code == 200, response.text
    got = (await api.client.get(f"/customers/{customer['id']}/consent")).json()
    assert got["version"] == 1
    assert got["channels"]["email"]["status"] == "opt_out"
    assert got["channels"]["email"]["source"] == "web_form"
    assert got["channels"]["phone"]["legal_basis"] == "legitimate_interest"
    assert "sms" not in got["channels"]
    assert got["timezone"] == "Europe/Berlin"
    assert got["frequency_cap"] == {"max_touches": 2, "window_days": 7.0}
    assert got["quiet_hours"] == {"start": "21:00", "end": "08:00"}

    [event] = await api.events("consent.changed")
    assert event["subject"] == customer["id"]
    data = event["data"]
    assert data["version"] == 1 and sorted(data["changed"]) == ["email", "phone"]
    assert data["channels"]["email"]["status"] == "opt_out"
    assert data["timezone"] == "Europe/Berlin"
    # ids and codes only: no contact detail of the customer reaches the event
    assert "x@example.com" not in str(event) and "ERP-1" not in str(event)


async def test_a_repeat_or_an_older_change_changes_nothing(api):
    customer = await api.create()
    url = f"/customers/{customer['id']}/consent"
    await api.client.put(url, json={"channels": {"sms": {"status": "opt_in", "at": _at(1)}}})
    await api.client.put(url, json={"channels": {"sms": {"status": "opt_in", "at": _at(0.5)}}})  # same state
    await api.client.put(url, json={"channels": {"sms": {"status": "opt_out", "at": _at(3)}}})  # older
    got = (await api.client.get(url)).json()
    assert got["version"] == 1 and got["channels"]["sms"]["status"] == "opt_in"
    assert len(await api.events("consent.changed")) == 1
    # a newer withdrawal applies
    await api.client.put(url, json={"channels": {"sms": {"status": "opt_out"}}})
    got = (await api.client.get(url)).json()
    assert got["version"] == 2 and got["channels"]["sms"]["status"] == "opt_out"
    history = (await api.client.get(f"{url}/history")).json()
    assert history["total"] == 2
    assert [(i["channel"], i["status"], i["previous_status"]) for i in history["items"]] == [
        ("sms", "opt_out", "opt_in"),
        ("sms", "opt_in", None),
    ]


async def test_clearing_a_preference_with_null(api):
    customer = await api.create()
    url = f"/customers/{customer['id']}/consent"
    await api.client.put(url, json={"timezone": "America/New_York", "quiet_hours": {"start": "22:00", "end": "07:00"}})
    await api.client.put(url, json={"quiet_hours": None})
    got = (await api.client.get(url)).json()
    assert got["timezone"] == "America/New_York" and got["quiet_hours"] is None and got["version"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"channels": {"fax": {"status": "opt_in"}}}, "channels.fax"),
        ({"channels": {"email": {"status": "maybe"}}}, "channels.email.status"),
        ({"channels": {"email": {"status": "opt_in", "legal_basis": "whim"}}}, "channels.email.legal_basis"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "07:00", "end": "07:00"}}, "quiet_hours"),
        ({"frequency_cap": {"max_touches": -1, "window_days": 7}}, "frequency_cap.max_touches"),
        ({"channels": {"email": {"status": "opt_in", "at": "2999-01-01T00:00:00Z"}}}, "channels.email.at"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field_and_writes_nothing(api, body, field):
    customer = await api.create()
    response = await api.client.put(f"/customers/{customer['id']}/consent", json=body)
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()
    assert (await api.client.get(f"/customers/{customer['id']}/consent")).json()["version"] == 0


async def test_unknown_customer_is_404_and_erased_one_409(api):
    assert (await api.client.get("/customers/nope/consent")).status_code == 404
    assert (await api.client.put("/customers/nope/consent", json={})).status_code == 404
    customer = await api.create()
    await api.client.delete(f"/customers/{customer['id']}")
    response = await api.client.put(
        f"/customers/{customer['id']}/consent", json={"channels": {"email": {"status": "opt_in"}}}
    )
    assert response.status_code == 409 and response.json()["type"].endswith(":erased")


async def test_erasure_removes_consent_profile_and_history(api):
    customer = await api.create()
    url = f"/customers/{customer['id']}/consent"
    await api.client.put(url, json={"channels": {"email": {"status": "opt_out"}}, "timezone": "Asia/Tokyo"})
    assert (await api.client.delete(f"/customers/{customer['id']}")).status_code == 202
    got = (await api.client.get(url)).json()
    assert got["version"] == 0 and got["channels"] == {} and got["timezone"] is None
    async with api.database.sessions() as session:
        for model in (Consent, ConsentChange, ContactProfile):
            count = (await session.execute(select(func.count()).select_from(model))).scalar_one()
            assert count == 0, model


async def test_bulk_reports_each_row_and_replays_its_idempotency_key(api):
    a = await api.create(external_ref="ERP-A")
    b = await api.create()
    rows = [
        {"external_ref": "ERP-A", "channel": "email", "status": "opt_out"},
        {"customer_id": b["id"], "channel": "sms", "status": "opt_in", "legal_basis": "contract"},
        {"customer_id": b["id"], "channel": "sms", "status": "opt_in", "legal_basis": "contract"},
        {"customer_id": "missing", "channel": "sms", "status": "opt_in"},
        {"external_ref": "ERP-A", "customer_id": a["id"], "channel": "sms", "status": "opt_in"},
        {"customer_id": b["id"], "channel": "pigeon", "status": "opt_in"},
        "not a row",
    ]
    headers = {"Idempotency-Key": "import-1"}
    response = await api.client.post("/customers/consent/bulk", json={"rows": rows}, headers=headers)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["applied"], report["unchanged"], report["rejected"]) == (2, 1, 4)
    assert [r["status"] for r in report["rows"]] == [
        "applied",
        "applied",
        "unchanged",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert report["rows"][0]["customer_id"] == a["id"]
    assert report["rows"][3]["errors"][0]["field"] == "customer_id"
    assert report["rows"][5]["errors"][0]["field"] == "channel"
    got = (await api.client.get(f"/customers/{a['id']}/consent")).json()
    assert got["channels"]["email"]["source"] == "bulk_import"

    replay = await api.client.post("/customers/consent/bulk", json={"rows": rows}, headers=headers)
    assert replay.json() == report
    assert len(await api.events("consent.changed")) == 2
    reused = await api.client.post("/customers/consent/bulk", json={"rows": rows[:1]}, headers=headers)
    assert reused.status_code == 422 and reused.json()["type"].endswith(":idempotency_key_reused")


def _inbound(ref: str, status: ConsentStatus, at: datetime) -> Received[ErpConsentChanged]:
    data = ErpConsentChanged(
        customer_ref=ref, channel=ContactChannel.email, status=status, source=ConsentSource.marketing, changed_at=at
    )
    return Received(envelope=CloudEvent.wrap(data, source="/erp"), data=data)


async def test_inbound_marketing_event_applies_and_an_unknown_reference_is_poison(api):
    customer = await api.create(external_ref="ERP-M")
    now = datetime.now(UTC)
    async with api.database.sessions() as session:
        await on_consent_changed(UnitOfWork(session), _inbound("ERP-M", ConsentStatus.opt_out, now))
        await on_consent_changed(UnitOfWork(session), _inbound("ERP-M", ConsentStatus.opt_out, now))  # duplicate
        await on_consent_changed(
            UnitOfWork(session), _inbound("ERP-M", ConsentStatus.opt_in, now - timedelta(days=1))
        )  # late
        await session.commit()
        with pytest.raises(PoisonEvent):
            await on_consent_changed(UnitOfWork(session), _inbound("ERP-UNKNOWN", ConsentStatus.opt_in, now))
    got = (await api.client.get(f"/customers/{customer['id']}/consent")).json()
    assert got["channels"]["email"]["status"] == "opt_out" and got["channels"]["email"]["source"] == "marketing"
    assert got["version"] == 1
