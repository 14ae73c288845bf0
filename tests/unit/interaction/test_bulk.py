import logging

import httpx
import orjson

from servicekit.turns import ROWS_PER_TURN
from services.interaction.interactions.bulk import validate_rows
from services.interaction.interactions.store import new_draft, new_interaction, row_values
from tests.unit.interaction.conftest import outbox_events
from tests.unit.loop_turns import other_task_turns


def purchase(i: int, **fields) -> dict:
    return {
        "customer_id": "c-1",
        "type": "purchase",
        "amount": "10.00",
        "currency": "USD",
        "occurred_at": "2025-01-01T00:00:00Z",
        "external_id": f"p-{i}",
        **fields,
    }


def test_rows_are_validated_one_by_one_with_the_fields_at_fault():
    valid, errors = validate_rows(
        [purchase(0), {**purchase(1), "amount": None}, "not an object", {"customer_id": "c-1", "type": "teleport"}]
    )
    assert list(valid) == [0]
    assert errors[1] == [{"field": "amount", "message": "Field required for a purchase"}]
    assert errors[2] == [{"field": "body", "message": "must be an object"}]
    assert [e["field"] for e in errors[3]] == ["type"]


async def test_good_rows_are_stored_and_bad_rows_reported_by_index(api, caplog):
    caplog.set_level(logging.INFO, logger="interaction.service")  # the timing log line must not break it
    client, _ = api
    items = [purchase(0), {**purchase(1), "currency": "dollars"}, purchase(2, customer_id="nobody"), purchase(3)]
    response = await client.post("/interactions/bulk", json={"rows": items})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["existing"], report["rejected"]) == (2, 0, 2)
    rows = report["rows"]
    assert [(r["index"], r["status"]) for r in rows] == [
        (0, "created"),
        (1, "rejected"),
        (2, "rejected"),
        (3, "created"),
    ]
    assert [e["field"] for e in rows[1]["errors"]] == ["currency"]
    assert rows[2]["errors"] == [{"field": "customer_id", "message": "unknown customer"}]
    timeline = (await client.get("/customers/c-1/interactions")).json()
    assert sorted(i["id"] for i in timeline["items"]) == sorted([rows[0]["id"], rows[3]["id"]])
    events = await outbox_events(client.database)
    assert [e["type"] for e in events] == ["interaction.recorded", "interaction.recorded"]
    assert any(r.message == "bulk import" for r in caplog.records)


async def test_a_repeated_import_reports_existing_rows_and_writes_nothing(api):
    client, _ = api
    first = (await client.post("/interactions/bulk", json={"rows": [purchase(0), purchase(1)]})).json()
    again = (await client.post("/interactions/bulk", json={"rows": [purchase(0), purchase(1), purchase(2)]})).json()
    assert (again["created"], again["existing"], again["rejected"]) == (1, 2, 0)
    assert [r["id"] for r in again["rows"][:2]] == [r["id"] for r in first["rows"]]
    assert len(await outbox_events(client.database)) == 3


async def test_a_row_repeating_an_external_id_of_the_same_request_is_existing_or_a_conflict(api):
    client, _ = api
    items = [purchase(0), purchase(0), purchase(0, type="call", amount=None, currency=None)]
    report = (await client.post("/interactions/bulk", json={"rows": items})).json()
    assert [r["status"] for r in report["rows"]] == ["created", "existing", "rejected"]
    assert report["rows"][1]["id"] == report["rows"][0]["id"]
    assert report["rows"][2]["errors"][0]["field"] == "external_id"


async def test_unknown_customers_are_asked_for_in_one_call_however_many_rows_name_them(api):
    client, customers = api
    customers.extra.update({"c-2", "c-3"})
    items = [purchase(i, customer_id=f"c-{1 + i % 4}") for i in range(40)]  # c-1 .. c-4; c-4 is unknown
    report = (await client.post("/interactions/bulk", json={"rows": items})).json()
    assert (report["created"], report["rejected"]) == (30, 10)
    [call] = customers.calls
    assert call.url.path == "/customers/lookup" and call.headers["x-crm-internal"]
    assert orjson.loads(call.content) == {"ids": ["c-1", "c-2", "c-3", "c-4"]}
    assert {r["errors"][0]["message"] for r in report["rows"] if r["status"] == "rejected"} == {"unknown customer"}


async def test_an_erased_customer_s_rows_are_rejected_for_good(api):
    client, customers = api
    customers.extra.add("c-gone")
    customers.erased.add("c-gone")
    report = (await client.post("/interactions/bulk", json={"rows": [purchase(0, customer_id="c-gone")]})).json()
    [row] = report["rows"]
    assert (row["status"], row["retryable"]) == ("rejected", False)
    assert row["errors"][0]["message"] == "the customer's data was erased"


async def test_a_briefly_unavailable_customer_service_is_asked_again_within_the_bound(api):
    client, customers = api
    customers.extra.add("c-2")
    failures = [httpx.Response(503), httpx.Response(502)]

    def flaky() -> httpx.Response:
        if failures:
            return failures.pop(0)
        customers.fail = None
        return customers(customers.calls.pop())  # answered normally this time

    customers.fail = flaky
    report = (await client.post("/interactions/bulk", json={"rows": [purchase(0, customer_id="c-2")]})).json()
    assert report["created"] == 1, report


async def test_customers_already_in_the_replica_are_not_asked_for(api):
    client, customers = api
    await client.post("/interactions", json=purchase(0))  # a single post puts c-1 in the replica
    customers.calls.clear()
    report = (await client.post("/interactions/bulk", json={"rows": [purchase(1), purchase(2)]})).json()
    assert report["created"] == 2
    assert customers.calls == []


async def test_a_failing_customer_service_rejects_only_the_rows_of_customers_not_known_yet(api):
    client, customers = api
    await client.post("/interactions", json=purchase(0))  # c-1 is in the replica now
    customers.fail = lambda: httpx.Response(503)
    report = (
        await client.post("/interactions/bulk", json={"rows": [purchase(1), purchase(2, customer_id="c-9")]})
    ).json()
    assert [r["status"] for r in report["rows"]] == ["created", "rejected"]
    assert "retry" in report["rows"][1]["errors"][0]["message"]
    assert [r["retryable"] for r in report["rows"]] == [False, True]  # only the passing cause


async def test_a_row_for_an_unknown_customer_is_rejected_for_good(api):
    client, _ = api
    report = (await client.post("/interactions/bulk", json={"rows": [purchase(1, customer_id="c-unknown")]})).json()
    [row] = report["rows"]
    assert row["status"] == "rejected" and row["retryable"] is False


async def test_complaints_and_surveys_in_bulk_emit_the_same_events_as_single_posts(api):
    client, _ = api
    items = [
        {"customer_id": "c-1", "type": "complaint", "severity": "low", "category": "billing"},
        {"customer_id": "c-1", "type": "survey", "survey": "nps", "score": 9},
    ]
    report = (await client.post("/interactions/bulk", json={"rows": items})).json()
    assert report["created"] == 2
    complaint = (await client.get(f"/complaints/{report['rows'][0]['id']}")).json()
    assert (complaint["complaint_status"], complaint["due_at"] is not None) == ("open", True)
    assert [e["type"] for e in await outbox_events(client.database)] == [
        "interaction.recorded",
        "complaint.opened",
        "interaction.recorded",
        "survey.answered",
    ]


async def test_an_empty_or_oversized_request_is_a_422_naming_rows(api):
    client, _ = api
    for items in ([], [purchase(0)] * 5001):
        response = await client.post("/interactions/bulk", json={"rows": items})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "rows"
    assert (await client.post("/interactions/bulk", json=[purchase(0)])).status_code == 422
    not_an_object = (await client.post("/interactions/bulk", json={"rows": [purchase(0), 7]})).json()
    assert [r["status"] for r in not_an_object["rows"]] == ["created", "rejected"]


def test_a_draft_holds_every_column_new_interaction_would_write():
    from datetime import UTC, datetime

    from services.interaction.interactions.models import InteractionCreate

    sla_hours = {"critical": 4.0, "high": 24.0, "medium": 72.0, "low": 168.0}
    now = datetime(2026, 1, 2, tzinfo=UTC)
    for row in (purchase(0), {"customer_id": "c-1", "type": "complaint", "severity": "high", "external_id": "k-1"}):
        data = InteractionCreate.model_validate(row)
        draft = vars(new_draft(data, sla_hours, now))
        model = row_values(new_interaction(data, sla_hours, now))
        assert draft.keys() == model.keys()
        assert {k: v for k, v in draft.items() if k != "id"} == {k: v for k, v in model.items() if k != "id"}


async def test_a_large_import_lets_the_loop_s_other_tasks_run_every_slice_of_rows(api):
    # A consumer on the same event loop (make run's layout) waits for such turns to handle its answered
    # queries; the old route ran 2,000 rows through with 4 turns in all (one per awaited statement at most).
    client, _ = api
    rows = [purchase(i) for i in range(20 * ROWS_PER_TURN)]
    async with other_task_turns() as turns:
        response = await client.post("/interactions/bulk", json={"rows": rows})
    assert response.json()["created"] == len(rows)
    # validation, storing and enqueueing each give a turn per slice
    assert turns[0] >= 3 * (len(rows) // ROWS_PER_TURN - 1)
    assert len(await outbox_events(client.database)) == len(rows)
