"""Object-level access on the real platform (issue 20, findings 4, 5, 10 and 13's reassignment part):
a duplicate create tells nothing of another owner's customer, the 360 view is no side door past a
part's own permission, agents complete their own tasks (and no one else's), and a reassignment
closes the previous owner's access at once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import create_customer, eventually, post_complaint
from tests.platform import GATEWAY, token

pytestmark = pytest.mark.e2e


def _bearer(role: str, sub: str, team: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, sub, team)}"}


def _agent() -> tuple[str, dict[str, str]]:
    sub = f"agent-{uuid.uuid4().hex[:8]}"
    return sub, _bearer("agent", sub)


async def _tasks_of(gateway: httpx.AsyncClient, customer_id: str) -> list[dict[str, Any]] | None:
    response = await gateway.get("/api/v1/tasks", params={"customer_id": customer_id, "limit": 200})
    assert response.status_code == 200, response.text
    return response.json()["items"] or None


async def _open_alert_of(gateway: httpx.AsyncClient, customer_id: str) -> dict[str, Any] | None:
    response = await gateway.get("/api/v1/alerts", params={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    return next(iter(response.json()["items"]), None)


# ---- finding 4: a duplicate external_ref -------------------------------------------------------------


async def test_creating_a_customer_with_another_owners_external_ref_is_a_409_that_tells_nothing(
    gateway: httpx.AsyncClient,
) -> None:
    bob, _ = _agent()
    alice, as_alice = _agent()
    ref = f"ERP-{uuid.uuid4()}"
    theirs = await create_customer(gateway, owner=bob, external_ref=ref, email="bob.client@example.com")

    response = await gateway.post(
        "/api/v1/customers", json={"name": "Mine", "kind": "company", "owner": alice, "external_ref": ref},
        headers=as_alice,
    )  # fmt: skip

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["external_ref"]
    for leaked in (theirs["id"], bob, "bob.client@example.com", theirs["name"]):
        assert leaked not in response.text
    assert "location" not in response.headers and "etag" not in response.headers


async def test_a_create_retried_with_its_idempotency_key_still_gets_its_first_answer(
    gateway: httpx.AsyncClient,
) -> None:
    alice, as_alice = _agent()
    body = {"name": "Retried", "kind": "company", "owner": alice, "external_ref": f"ERP-{uuid.uuid4()}"}
    headers = {**as_alice, "Idempotency-Key": f"create-{uuid.uuid4()}"}

    first = await gateway.post("/api/v1/customers", json=body, headers=headers)
    again = await gateway.post("/api/v1/customers", json=body, headers=headers)
    # Another caller with the same key is a new request: here a 409 for the taken external_ref, not a replay.
    bob, as_bob = _agent()
    other = await gateway.post(
        "/api/v1/customers",
        json={**body, "owner": bob},
        headers={**as_bob, "Idempotency-Key": headers["Idempotency-Key"]},
    )

    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409
    assert first.json()["id"] not in other.text


async def test_a_bulk_row_with_a_known_external_ref_reports_only_the_id(gateway: httpx.AsyncClient) -> None:
    ref = f"ERP-{uuid.uuid4()}"
    known = await create_customer(gateway, external_ref=ref, email="known@example.com")

    response = await gateway.post("/api/v1/customers/bulk", json={"rows": [{"name": "Again", "external_ref": ref}]})

    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"index": 0, "status": "existing", "id": known["id"]}]


# ---- finding 5: the 360 view, part by part -------------------------------------------------------------


async def test_the_360_view_omits_and_names_every_part_a_scoped_key_may_not_read(gateway: httpx.AsyncClient) -> None:
    customer = await create_customer(gateway)
    await post_complaint(gateway, customer["id"], severity="critical")
    await eventually(lambda: _open_alert_of(gateway, customer["id"]), what="the complaint's alert")
    created = await gateway.post(
        "/api/v1/keys", json={"name": f"crm-sync-{uuid.uuid4().hex[:6]}", "role": "integration",
                              "scopes": ["customers:read"]},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    try:
        async with httpx.AsyncClient(base_url=GATEWAY, timeout=10, headers={"X-API-Key": created.json()["key"]}) as key:
            response = await key.get(f"/api/v1/customers/{customer['id']}/360")
    finally:
        await gateway.delete(f"/api/v1/keys/{created.json()['id']}")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["profile"]["id"] == customer["id"]
    assert body["omitted"] == {
        "scores": {"reason": "not_permitted", "permission": "scores:read"},
        "interactions": {"reason": "not_permitted", "permission": "interactions:read"},
        "complaints": {"reason": "not_permitted", "permission": "complaints:read"},
        "alerts": {"reason": "not_permitted", "permission": "alerts:read"},
        "tasks": {"reason": "not_permitted", "permission": "tasks:read"},
    }
    assert all(body[part] is None for part in body["omitted"])
    assert (body["complete"], body["unavailable"]) == (False, {})
    # The admin, allowed everything, gets every part.
    full = (await gateway.get(f"/api/v1/customers/{customer['id']}/360")).json()
    assert (full["omitted"], full["complete"]) == ({}, True)
    assert full["alerts"]["items"]


# ---- finding 10: an agent completes their own task (retention serves GET /tasks/{id}) ----------------------


async def test_an_agent_completes_their_own_task_but_not_another_owners(gateway: httpx.AsyncClient) -> None:
    alice, as_alice = _agent()
    bob, as_bob = _agent()
    mine = await create_customer(gateway, owner=alice)
    theirs = await create_customer(gateway, owner=bob)
    for customer in (mine, theirs):
        await post_complaint(gateway, customer["id"], severity="critical")
    my_tasks = await eventually(lambda: _tasks_of(gateway, mine["id"]), what="alice's playbook tasks")
    their_tasks = await eventually(lambda: _tasks_of(gateway, theirs["id"]), what="bob's playbook tasks")

    done = await gateway.post(f"/api/v1/tasks/{my_tasks[0]['id']}/complete", json={"note": "called"}, headers=as_alice)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    assert (await gateway.get(f"/api/v1/tasks/{my_tasks[0]['id']}", headers=as_alice)).status_code == 200

    refused = await gateway.post(f"/api/v1/tasks/{their_tasks[0]['id']}/complete", json={}, headers=as_alice)
    assert refused.status_code in (403, 404)
    assert (await gateway.get(f"/api/v1/tasks/{their_tasks[0]['id']}", headers=as_alice)).status_code in (403, 404)
    # Untouched: still open for bob.
    assert (await gateway.get(f"/api/v1/tasks/{their_tasks[0]['id']}", headers=as_bob)).json()["status"] == "open"


# ---- finding 13: a previous owner loses access at once ----------------------------------------------------


async def test_after_a_reassignment_the_previous_owner_is_refused_and_the_new_owner_served(
    gateway: httpx.AsyncClient,
) -> None:
    alice, as_alice = _agent()
    bob, as_bob = _agent()
    customer = await create_customer(gateway, owner=alice)
    customer_id = customer["id"]
    await post_complaint(gateway, customer_id, severity="critical")
    alert = await eventually(lambda: _open_alert_of(gateway, customer_id), what="the complaint's alert")
    tasks = await eventually(lambda: _tasks_of(gateway, customer_id), what="the playbook tasks")
    # One task done while the customer was alice's: closed work must not stay hers either.
    done = await gateway.post(f"/api/v1/tasks/{tasks[0]['id']}/complete", json={}, headers=as_alice)
    assert done.status_code == 200, done.text
    paths = [
        f"/api/v1/customers/{customer_id}",
        f"/api/v1/customers/{customer_id}/360",
        f"/api/v1/customers/{customer_id}/scores",
        f"/api/v1/alerts/{alert['id']}",
        *(f"/api/v1/tasks/{t['id']}" for t in tasks),
    ]
    for path in paths:  # alice's access, checked (and cached, were there a cache) just before the move
        assert (await gateway.get(path, headers=as_alice)).status_code in (200, 404), path
    assert (await gateway.get(paths[0], headers=as_alice)).status_code == 200

    moved = await gateway.patch(f"/api/v1/customers/{customer_id}", json={"owner": bob}, headers={"If-Match": '"1"'})
    assert moved.status_code == 200, moved.text

    for path in paths:
        assert (await gateway.get(path, headers=as_alice)).status_code in (403, 404), path
    refused = await gateway.post(f"/api/v1/tasks/{tasks[-1]['id']}/complete", json={}, headers=as_alice)
    assert refused.status_code in (403, 404)
    assert (await gateway.get(paths[0], headers=as_bob)).status_code == 200
    assert (await gateway.get(paths[1], headers=as_bob)).status_code == 200
    assert (await gateway.get(paths[3], headers=as_bob)).status_code == 200
    for task in tasks:
        assert (await gateway.get(f"/api/v1/tasks/{task['id']}", headers=as_bob)).status_code == 200

    # Lists follow once retention has the owner change (over Kafka): nothing of the customer stays alice's.
    async def moved_in_lists() -> bool:
        mine_alerts = (await gateway.get("/api/v1/alerts", headers=as_alice)).json()["items"]
        mine_tasks = (await gateway.get("/api/v1/tasks", params={"limit": 200}, headers=as_alice)).json()["items"]
        bobs_tasks = (await gateway.get("/api/v1/tasks", params={"limit": 200}, headers=as_bob)).json()["items"]
        return (
            not [a for a in mine_alerts if a["customer_id"] == customer_id]
            and not [t for t in mine_tasks if t["customer_id"] == customer_id]
            and {t["id"] for t in tasks} <= {t["id"] for t in bobs_tasks}
        )

    await eventually(moved_in_lists, what="alice's lists to drop the customer's alerts and tasks, bob's to hold them")
