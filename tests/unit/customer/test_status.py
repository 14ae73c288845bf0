"""POST /customers/{id}/status: the lifecycle through the API, its events and history."""

from datetime import UTC, datetime, timedelta


async def test_churning_stores_the_date_and_reason_and_emits_status_changed(api):
    customer = await api.create()
    response = await api.client.post(
        f"/customers/{customer['id']}/status",
        json={"status": "churned", "reason": "competitor", "churned_at": "2026-01-15", "note": "went to X"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["churn_reason"], body["churned_at"], body["version"]) == (
        "churned",
        "competitor",
        "2026-01-15",
        2,
    )
    assert response.headers["etag"] == '"2"'
    [event] = await api.events("customer.status_changed")
    data = event["data"]
    assert (data["previous_status"], data["status"], data["reason"], data["churned_at"], data["version"]) == (
        "active",
        "churned",
        "competitor",
        "2026-01-15",
        2,
    )
    assert "note" not in data and "went to X" not in str(data)  # free text stays in the service


async def test_an_invalid_transition_is_a_409_with_the_reason_and_changes_nothing(api):
    customer = await api.create(status="prospect")
    response = await api.client.post(
        f"/customers/{customer['id']}/status",
        json={"status": "churned", "reason": "price", "churned_at": "2026-01-15"},
    )
    assert response.status_code == 409
    problem = response.json()
    assert problem["type"] == "urn:crm:problem:invalid_transition"
    assert "cannot churn" in problem["detail"]
    assert problem["allowed"] == ["active"]
    assert (await api.client.get(f"/customers/{customer['id']}")).json()["status"] == "prospect"
    assert await api.events("customer.status_changed") == []


async def test_churning_without_its_details_is_a_422_naming_them(api):
    customer = await api.create()
    response = await api.client.post(f"/customers/{customer['id']}/status", json={"status": "churned"})
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == ["churned_at", "reason"]


async def test_an_unknown_churn_reason_is_a_422_naming_reason(api):
    customer = await api.create()
    response = await api.client.post(
        f"/customers/{customer['id']}/status",
        json={"status": "churned", "reason": "bored", "churned_at": "2026-01-15"},
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["reason"]


async def test_a_churn_date_in_the_future_is_a_422(api):
    customer = await api.create()
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    response = await api.client.post(
        f"/customers/{customer['id']}/status", json={"status": "churned", "reason": "price", "churned_at": tomorrow}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["churned_at"]


async def test_a_won_back_customer_may_churn_again_and_the_history_lists_every_step(api):
    customer = await api.create(status="prospect")
    path = f"/customers/{customer['id']}/status"
    steps = [
        {"status": "active"},
        {"status": "churned", "reason": "price", "churned_at": "2025-06-01"},
        {"status": "won_back", "note": "discount offered"},
        {"status": "churned", "reason": "relocation", "churned_at": "2026-01-01"},
    ]
    for step in steps:
        response = await api.client.post(path, json=step)
        assert response.status_code == 200, response.text
    assert response.json()["churn_reason"] == "relocation"
    history = (await api.client.get(f"/customers/{customer['id']}/status-history")).json()
    assert [h["status"] for h in history["items"]] == ["churned", "won_back", "churned", "active", "prospect"]
    assert history["items"][1]["note"] == "discount offered"
    assert len(await api.events("customer.status_changed")) == 4


async def test_a_status_change_with_a_stale_if_match_is_a_412(api):
    customer = await api.create(status="prospect")
    response = await api.client.post(
        f"/customers/{customer['id']}/status", json={"status": "active"}, headers={"If-Match": '"7"'}
    )
    assert response.status_code == 412


async def test_a_customer_created_as_churned_needs_its_churn_details(api):
    response = await api.client.post("/customers", json={"name": "A", "status": "churned"})
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == ["churn_reason", "churned_at"]
    ok = await api.client.post(
        "/customers", json={"name": "A", "status": "churned", "churn_reason": "price", "churned_at": "2025-01-01"}
    )
    assert ok.status_code == 201
    [event] = await api.events("customer.created")
    assert (event["data"]["churn_reason"], event["data"]["churned_at"]) == ("price", "2025-01-01")
