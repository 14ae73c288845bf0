from datetime import UTC, datetime, timedelta

from tests.unit.interaction.conftest import outbox_events


async def open_complaint(client, **fields) -> dict:
    body = {"customer_id": "c-1", "type": "complaint", "severity": "high", "category": "delivery", **fields}
    response = await client.post("/interactions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def step(client, complaint_id: str, to: str, **fields):
    return await client.post(f"/complaints/{complaint_id}/transitions", json={"to": to, **fields})


async def test_a_complaint_walks_the_whole_workflow_and_each_step_emits_complaint_updated(api):
    client, _ = api
    complaint = await open_complaint(client)
    for to, extra in [
        ("acknowledged", {"note": "Called the customer back"}),
        ("valid", {}),
        ("resolved", {"resolution": "Sent a replacement by express"}),
        ("followed_up", {"note": "Customer happy"}),
        ("closed", {}),
    ]:
        response = await step(client, complaint["id"], to, **extra)
        assert response.status_code == 200, response.text
        assert response.json()["complaint_status"] == to
    body = (await client.get(f"/complaints/{complaint['id']}")).json()
    assert body["resolution"] == "Sent a replacement by express"
    assert [(s["previous_status"], s["status"], s["note"]) for s in body["steps"]] == [
        ("open", "acknowledged", "Called the customer back"),
        ("acknowledged", "valid", None),
        ("valid", "resolved", None),
        ("resolved", "followed_up", "Customer happy"),
        ("followed_up", "closed", None),
    ]
    updates = [e for e in await outbox_events(client.database) if e["type"] == "complaint.updated"]
    assert [(u["data"]["previous_status"], u["data"]["status"]) for u in updates] == [
        ("open", "acknowledged"),
        ("acknowledged", "valid"),
        ("valid", "resolved"),
        ("resolved", "followed_up"),
        ("followed_up", "closed"),
    ]
    assert {(u["key"], u["data"]["complaint_id"], u["data"]["category"]) for u in updates} == {
        ("c-1", complaint["id"], "delivery")
    }
    assert all("resolution" not in u["data"] and "note" not in u["data"] for u in updates)  # no free text on Kafka


async def test_a_rejected_complaint_can_only_be_closed(api):
    client, _ = api
    complaint = await open_complaint(client)
    await step(client, complaint["id"], "acknowledged")
    assert (await step(client, complaint["id"], "rejected", note="Delivered on time per tracking")).status_code == 200
    refused = await step(client, complaint["id"], "resolved", resolution="x")
    assert refused.status_code == 409
    assert (await step(client, complaint["id"], "closed")).status_code == 200


async def test_an_invalid_transition_is_a_409_problem_naming_to_and_changes_nothing(api):
    client, _ = api
    complaint = await open_complaint(client)
    response = await step(client, complaint["id"], "resolved", resolution="Refunded")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:crm:problem:invalid_transition"
    assert (body["current_status"], body["allowed"]) == ("open", ["acknowledged"])
    assert [e["field"] for e in body["errors"]] == ["to"]
    assert (await client.get(f"/complaints/{complaint['id']}")).json()["complaint_status"] == "open"
    assert not [e for e in await outbox_events(client.database) if e["type"] == "complaint.updated"]


async def test_resolving_without_a_resolution_is_a_422_naming_resolution(api):
    client, _ = api
    complaint = await open_complaint(client)
    await step(client, complaint["id"], "acknowledged")
    await step(client, complaint["id"], "valid")
    response = await step(client, complaint["id"], "resolved", resolution="  ")
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["resolution"]


async def test_an_unknown_status_or_field_is_a_422_and_an_unknown_complaint_a_404(api):
    client, _ = api
    complaint = await open_complaint(client)
    bad = await step(client, complaint["id"], "solved")
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "to")
    extra = await step(client, complaint["id"], "acknowledged", by="me")
    assert (extra.status_code, extra.json()["errors"][0]["field"]) == (422, "by")
    missing = await step(client, "nope", "acknowledged")
    assert (missing.status_code, missing.json()["errors"][0]["field"]) == (404, "id")
    call = (await client.post("/interactions", json={"customer_id": "c-1", "type": "call"})).json()
    assert (await step(client, call["id"], "acknowledged")).status_code == 404  # not a complaint


async def test_a_complaint_category_must_be_one_of_the_six_and_defaults_to_other(api):
    client, _ = api
    bad = await client.post(
        "/interactions", json={"customer_id": "c-1", "type": "complaint", "severity": "low", "category": "weather"}
    )
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "category")
    assert (await open_complaint(client, category=None))["category"] == "other"
    assert (await open_complaint(client, category="Product_Quality"))["category"] == "product_quality"
    # Other types keep a free category.
    free = await client.post("/interactions", json={"customer_id": "c-1", "type": "feedback", "category": "weather"})
    assert free.status_code == 201


async def test_complaints_are_listed_by_filters_earliest_due_first_and_paged(api):
    client, customers = api
    customers.extra.add("c-2")
    long_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    late = await open_complaint(client, severity="critical", occurred_at=long_ago)
    billing = await open_complaint(client, severity="low", category="billing")
    other = await open_complaint(client, customer_id="c-2", severity="medium")
    await step(client, billing["id"], "acknowledged")

    async def ids(**params) -> list[str]:
        response = await client.get("/complaints", params=params)
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    assert await ids() == [late["id"], other["id"], billing["id"]]
    assert await ids(status="acknowledged") == [billing["id"]]
    assert await ids(status=["open", "acknowledged"], customer_id="c-1") == [late["id"], billing["id"]]
    assert await ids(severity="medium") == [other["id"]]
    assert await ids(category="billing") == [billing["id"]]
    assert await ids(overdue="true") == [late["id"]]
    assert await ids(overdue="false") == [other["id"], billing["id"]]
    page = (await client.get("/complaints", params={"limit": 1, "offset": 1})).json()
    assert (page["total"], page["limit"], page["offset"], [i["id"] for i in page["items"]]) == (3, 1, 1, [other["id"]])
    assert (await client.get("/complaints", params={"limit": 500})).status_code == 422
    bad = await client.get("/complaints", params={"category": "weather"})
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "query.category[0]")
