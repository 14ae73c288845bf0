"""Create (idempotent by key and by external_ref), read with ETag, PATCH with optimistic concurrency."""

from datetime import timedelta

import pytest
from sqlalchemy import update

from servicekit.clock import utc_now
from services.customer.customers import service
from services.customer.customers.models import IdempotencyKey

PERSON = {
    "name": "Li Wei",
    "kind": "person",
    "email": "li.wei@example.com",
    "phone": "+49 30 1234",
    "contacts": [{"kind": "address", "value": "Hauptstr. 1, Berlin", "label": "home"}],
    "external_ref": "ERP-1",
    "segment": "consumer",
    "owner": "agent-7",
    "tags": ["vip", "newsletter", "vip"],
    "attributes": {"plan": "pro", "monthly_charge": 29.9, "paperless": True, "contract_start": "2024-05-01"},
}


async def test_a_created_customer_is_answered_with_its_etag_and_location(api):
    response = await api.client.post("/customers", json=PERSON)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"/customers/{body['id']}"
    assert body["tags"] == ["vip", "newsletter"]  # duplicates dropped, order kept
    assert body["contacts"] == [{"kind": "address", "value": "Hauptstr. 1, Berlin", "label": "home"}]
    assert (body["status"], body["version"], body["erased_at"]) == ("active", 1, None)
    again = await api.client.get(f"/customers/{body['id']}")
    assert again.json() == body
    assert again.headers["etag"] == '"1"'


async def test_the_created_event_carries_no_personal_data(api):
    customer = await api.create(**PERSON)
    [event] = await api.events("customer.created")
    assert event["subject"] == customer["id"]
    text = str(event["data"])
    for personal in ("Li Wei", "li.wei@example.com", "+49 30 1234", "Hauptstr", "ERP-1", "newsletter", "2024-05-01"):
        assert personal not in text
    # No tags, no external reference (only that there is one), no attribute not declared non-personal.
    assert (event["data"]["tags"], event["data"]["attributes"], event["data"]["external_ref_set"]) == ([], {}, True)


async def test_only_attributes_declared_non_personal_reach_the_events(api):
    customer = await api.create(name="T", attributes={"tier": "gold", "nickname": "Bunny"})
    patched = await api.client.patch(
        f"/customers/{customer['id']}", json={"attributes": {"nickname": "Hops"}}, headers={"If-Match": '"1"'}
    )
    assert patched.status_code == 200, patched.text
    [created] = await api.events("customer.created")
    [updated] = await api.events("customer.updated")
    assert created["data"]["attributes"] == updated["data"]["attributes"] == {"tier": "gold"}
    assert "Bunny" not in str(created) and "Hops" not in str(updated)


async def test_an_invalid_contact_email_is_a_422_naming_the_contact(api):
    body = {"name": "A", "contacts": [{"kind": "phone", "value": "+1 555"}, {"kind": "email", "value": "nope"}]}
    response = await api.client.post("/customers", json=body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["contacts[1]"]


async def test_a_repeated_external_ref_is_a_409_that_tells_nothing_about_the_existing_customer(api):
    first = await api.create(external_ref="ERP-9", owner="bob", email="bob.customer@example.com")
    again = await api.client.post("/customers", json={"name": "Other name", "external_ref": "ERP-9", "owner": "eve"})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in again.json()["errors"]] == ["external_ref"]
    for leaked in (first["id"], "bob", "bob.customer@example.com", first["name"]):
        assert leaked not in again.text
    assert "location" not in again.headers and "etag" not in again.headers
    assert len(await api.events("customer.created")) == 1


async def test_a_retry_with_the_same_key_by_the_same_caller_replays_even_though_the_external_ref_now_exists(api):
    headers = {"Idempotency-Key": "k-1", "X-CRM-Principal": "kind=user&role=agent&sub=alice"}
    body = {"name": "Acme", "external_ref": "ERP-10", "owner": "alice"}
    first = await api.client.post("/customers", json=body, headers=headers)
    again = await api.client.post("/customers", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"


async def test_idempotency_keys_are_per_caller_so_another_caller_cannot_replay_them(api):
    body = {"name": "Acme", "owner": "alice"}
    alice = {"Idempotency-Key": "k-2", "X-CRM-Principal": "kind=user&role=agent&sub=alice"}
    mallory = {"Idempotency-Key": "k-2", "X-CRM-Principal": "kind=key&role=integration&sub=mallory"}
    first = await api.client.post("/customers", json=body, headers=alice)
    other = await api.client.post("/customers", json=body, headers=mallory)
    assert (first.status_code, other.status_code) == (201, 201)
    assert other.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in other.headers


async def test_a_replayed_key_whose_customer_was_reassigned_is_a_409_not_the_new_owners_customer(api):
    headers = {"Idempotency-Key": "k-3", "X-CRM-Principal": "kind=user&role=agent&sub=alice"}
    body = {"name": "Acme", "owner": "alice"}
    first = (await api.client.post("/customers", json=body, headers=headers)).json()
    moved = await api.client.patch(f"/customers/{first['id']}", json={"owner": "bob"}, headers={"If-Match": '"1"'})
    assert moved.status_code == 200
    again = await api.client.post("/customers", json=body, headers=headers)
    assert again.status_code == 409
    assert first["id"] not in again.text


async def test_the_same_idempotency_key_and_body_replay_the_first_answer(api):
    headers = {"Idempotency-Key": "req-42"}
    first = await api.client.post("/customers", json={"name": "Acme", "segment": "smb"}, headers=headers)
    # Same meaning, different key order: still the same request.
    again = await api.client.post("/customers", json={"segment": "smb", "name": "Acme"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await api.events("customer.created")) == 1


async def test_an_idempotency_key_older_than_its_ttl_is_purged_and_then_makes_a_new_customer(api):
    headers = {"Idempotency-Key": "req-44"}
    first = await api.client.post("/customers", json={"name": "Acme"}, headers=headers)
    kept = await api.client.post("/customers", json={"name": "Other"}, headers={"Idempotency-Key": "req-45"})
    async with api.database.transaction() as session:
        # Only keys stored before the cut-off go: req-44 is backdated two days, req-45 stays fresh.
        backdate = update(IdempotencyKey).where(IdempotencyKey.key == "req-44")
        await session.execute(backdate.values(created_at=utc_now() - timedelta(days=2)))
        purged = await service.purge_idempotency_keys(session=session, older_than=utc_now() - timedelta(hours=24))
    assert purged == 1
    again = await api.client.post("/customers", json={"name": "Acme"}, headers=headers)
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
    replay = await api.client.post("/customers", json={"name": "Other"}, headers={"Idempotency-Key": "req-45"})
    assert replay.json()["id"] == kept.json()["id"]


async def test_the_same_idempotency_key_with_another_body_is_a_422(api):
    headers = {"Idempotency-Key": "req-43"}
    await api.client.post("/customers", json={"name": "Acme"}, headers=headers)
    response = await api.client.post("/customers", json={"name": "Acme Ltd"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["type"] == "urn:crm:problem:idempotency_key_reused"
    assert [e["field"] for e in response.json()["errors"]] == ["header.idempotency-key"]


async def test_a_patch_with_the_current_etag_applies_and_bumps_the_version(api):
    customer = await api.create(**PERSON)
    response = await api.client.patch(
        f"/customers/{customer['id']}",
        json={"segment": "smb", "phone": None, "attributes": {"paperless": None, "seats": 3}},
        headers={"If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["etag"] == '"2"'
    assert (body["segment"], body["phone"], body["version"]) == ("smb", None, 2)
    assert body["attributes"] == {"plan": "pro", "monthly_charge": 29.9, "contract_start": "2024-05-01", "seats": 3}
    [event] = await api.events("customer.updated")
    assert event["data"]["changed"] == ["attributes", "phone", "segment"]
    assert event["data"]["version"] == 2
    assert event["data"]["segment"] == "smb"
    assert "+49" not in str(event["data"])  # names of changed fields, never their personal values


async def test_a_patch_with_a_stale_etag_is_a_412_and_changes_nothing(api):
    customer = await api.create()
    await api.client.patch(f"/customers/{customer['id']}", json={"segment": "a"}, headers={"If-Match": '"1"'})
    response = await api.client.patch(
        f"/customers/{customer['id']}", json={"segment": "b"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 412
    assert response.json()["current_version"] == 2
    assert response.headers["etag"] == '"2"'
    assert (await api.client.get(f"/customers/{customer['id']}")).json()["segment"] == "a"


async def test_a_patch_without_if_match_or_version_is_a_428(api):
    customer = await api.create()
    response = await api.client.patch(f"/customers/{customer['id']}", json={"segment": "a"})
    assert response.status_code == 428
    assert [e["field"] for e in response.json()["errors"]] == ["header.if-match"]


@pytest.mark.parametrize("if_match", ["", '"a"', '"1",', "1; DROP"])
async def test_an_if_match_that_is_no_etag_list_is_a_422_naming_the_header(api, if_match):
    customer = await api.create()
    response = await api.client.patch(
        f"/customers/{customer['id']}", json={"segment": "a"}, headers={"If-Match": if_match}
    )
    assert response.status_code == 422
    assert any("if-match" in e["field"] for e in response.json()["errors"])


async def test_a_version_field_stands_in_for_if_match(api):
    customer = await api.create()
    ok = await api.client.patch(f"/customers/{customer['id']}", json={"segment": "a", "version": 1})
    stale = await api.client.patch(f"/customers/{customer['id']}", json={"segment": "b", "version": 1})
    assert (ok.status_code, stale.status_code) == (200, 412)


async def test_a_patch_that_changes_nothing_keeps_the_version_and_emits_nothing(api):
    customer = await api.create(segment="smb")
    response = await api.client.patch(
        f"/customers/{customer['id']}", json={"segment": "smb"}, headers={"If-Match": "1"}
    )
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert await api.events("customer.updated") == []


async def test_patch_refuses_the_status_and_unknown_fields(api):
    customer = await api.create()
    response = await api.client.patch(
        f"/customers/{customer['id']}", json={"status": "churned", "nmae": "x"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == ["nmae", "status"]


async def test_patch_to_an_external_ref_another_customer_has_is_a_409(api):
    await api.create(external_ref="ERP-1")
    other = await api.create(external_ref="ERP-2")
    response = await api.client.patch(
        f"/customers/{other['id']}", json={"external_ref": "ERP-1"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 409
    assert [e["field"] for e in response.json()["errors"]] == ["external_ref"]


async def test_get_with_the_current_etag_in_if_none_match_is_304(api):
    customer = await api.create()
    response = await api.client.get(f"/customers/{customer['id']}", headers={"If-None-Match": '"1"'})
    assert response.status_code == 304


async def test_an_unknown_customer_is_a_404_problem(api):
    response = await api.client.get("/customers/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
