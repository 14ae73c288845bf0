import httpx
import pytest

COMPLAINT = {"customer_id": "c-1", "type": "complaint", "severity": "high", "text": "Late again."}


async def test_a_complaint_for_a_customer_just_created_elsewhere_is_accepted(api):
    client, customers = api
    response = await client.post("/interactions", json=COMPLAINT, headers={"x-request-id": "req-1"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/interactions/{body['id']}"
    assert (body["complaint_status"], body["severity"], body["text"]) == ("open", "high", "Late again.")
    assert body["due_at"].endswith("Z") and body["occurred_at"].endswith("Z")
    assert [c.headers["x-request-id"] for c in customers.calls] == ["req-1"]  # the request id travels along


async def test_a_repeat_with_the_same_external_id_answers_200_with_the_first_interaction(api):
    client, _ = api
    first = await client.post("/interactions", json={**COMPLAINT, "external_id": "t-1"})
    again = await client.post("/interactions", json={**COMPLAINT, "external_id": "t-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


async def test_a_complaint_without_severity_is_a_422_problem_naming_severity(api):
    client, customers = api
    response = await client.post("/interactions", json={"customer_id": "c-1", "type": "complaint"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["severity"]
    assert customers.calls == []


async def test_an_unknown_customer_is_a_404_problem_naming_customer_id(api):
    client, _ = api
    response = await client.post("/interactions", json={**COMPLAINT, "customer_id": "nobody"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": "customer_id", "message": "unknown customer"}]


@pytest.mark.parametrize(
    "failure",
    [lambda: httpx.Response(502), lambda: (_ for _ in ()).throw(httpx.ConnectError("refused"))],
    ids=["5xx", "unreachable"],
)
async def test_a_failing_customer_service_is_a_503_problem(api, failure):
    client, customers = api
    customers.fail = failure
    response = await client.post("/interactions", json=COMPLAINT)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["type"] == "urn:crm:problem:dependency_unavailable"


async def test_an_interaction_is_read_back_by_id_and_an_unknown_id_is_404(api):
    client, _ = api
    created = (await client.post("/interactions", json=COMPLAINT)).json()
    assert (await client.get(f"/interactions/{created['id']}")).json() == created
    missing = await client.get("/interactions/nope")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["field"] == "id"


async def test_the_timeline_pages_newest_first_and_refuses_an_empty_period(api):
    client, _ = api
    for day in (1, 3, 2):
        await client.post(
            "/interactions", json={"customer_id": "c-1", "type": "call", "occurred_at": f"2026-01-0{day}"}
        )
    response = await client.get("/customers/c-1/interactions", params={"limit": 2})
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (3, 2, 0)
    assert [i["occurred_at"] for i in body["items"]] == ["2026-01-03T00:00:00Z", "2026-01-02T00:00:00Z"]
    filtered = await client.get(
        "/customers/c-1/interactions", params={"type": ["call", "email"], "since": "2026-01-02"}
    )
    assert filtered.json()["total"] == 2
    unknown = await client.get("/customers/nobody/interactions")
    assert (unknown.status_code, unknown.json()["items"]) == (200, [])
    empty = await client.get("/customers/c-1/interactions", params={"since": "2026-01-02", "until": "2026-01-02"})
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "until"
    too_many = await client.get("/customers/c-1/interactions", params={"limit": 1000})
    assert too_many.status_code == 422


async def test_calls_to_the_customer_service_carry_the_internal_credential(api):
    from servicekit.auth import current_settings, verify

    client, customers = api
    await client.post("/interactions", json=COMPLAINT)
    [call] = customers.calls
    settings = current_settings()
    assert call.headers["x-crm-principal"] == "service:interaction"
    assert verify(
        call.headers["x-crm-internal"],
        "GET",
        "/customers/c-1",
        token=settings.internal_token,
        max_age_s=settings.internal_auth_max_age_s,
        principal="service:interaction",
    )
