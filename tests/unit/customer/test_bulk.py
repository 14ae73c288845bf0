"""POST /customers/bulk: row-by-row validation, per-row report, no half-written rows."""

from sqlalchemy import func, select

from servicekit.turns import ROWS_PER_TURN
from services.customer.customers.models import Customer, CustomerAttribute, CustomerTag
from services.customer.status.models import StatusChange
from tests.unit.loop_turns import other_task_turns


async def _count(api, table) -> int:
    async with api.database.sessions() as session:
        return (await session.execute(select(func.count()).select_from(table))).scalar_one()


async def test_good_rows_are_stored_and_bad_rows_reported_without_leaving_anything(api):
    rows = [
        {"name": "Good One", "external_ref": "E-1", "tags": ["vip"], "attributes": {"plan": "pro"}},
        {"name": "", "external_ref": "E-2"},  # blank name
        {"name": "Bad Mail", "email": "not-an-email", "tags": ["x"], "attributes": {"plan": "basic"}},
        "not an object",
        {"name": "Nested", "attributes": {"plan": {"tier": 1}}},
        {"name": "Good Two", "status": "churned", "churn_reason": "price", "churned_at": "2025-01-01"},
    ]
    response = await api.client.post("/customers/bulk", json={"rows": rows})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["existing"], report["rejected"]) == (2, 0, 4)
    assert [r["status"] for r in report["rows"]] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
    ]
    assert [r["index"] for r in report["rows"]] == list(range(6))
    assert [e["field"] for e in report["rows"][1]["errors"]] == ["name"]
    assert [e["field"] for e in report["rows"][2]["errors"]] == ["email"]
    assert [e["field"] for e in report["rows"][3]["errors"]] == ["row"]
    assert [e["field"] for e in report["rows"][4]["errors"]] == ["attributes.plan"]
    assert "id" not in report["rows"][1] and "errors" not in report["rows"][0]
    # Only the two good rows exist, with their index rows and history; nothing of the rejected ones.
    assert await _count(api, Customer) == 2
    assert await _count(api, CustomerTag) == 1
    assert await _count(api, CustomerAttribute) == 1
    assert await _count(api, StatusChange) == 2
    created = await api.events("customer.created")
    assert sorted(e["subject"] for e in created) == sorted([report["rows"][0]["id"], report["rows"][5]["id"]])
    stored = (await api.client.get(f"/customers/{report['rows'][0]['id']}")).json()
    assert (stored["name"], stored["tags"], stored["attributes"]) == ("Good One", ["vip"], {"plan": "pro"})


async def test_known_external_refs_are_existing_also_when_repeated_within_the_request(api):
    known = await api.create(external_ref="E-1")
    rows = [
        {"name": "A", "external_ref": "E-1"},
        {"name": "B", "external_ref": "E-2"},
        {"name": "B2", "external_ref": "E-2"},
    ]
    report = (await api.client.post("/customers/bulk", json={"rows": rows})).json()
    assert report["rows"][0] == {"index": 0, "status": "existing", "id": known["id"]}
    assert report["rows"][1]["status"] == "created"
    assert report["rows"][2] == {"index": 2, "status": "existing", "id": report["rows"][1]["id"]}
    assert await _count(api, Customer) == 2


async def test_repeating_an_import_creates_nothing_new(api):
    rows = [{"name": f"C{i}", "external_ref": f"R-{i}"} for i in range(20)]
    first = (await api.client.post("/customers/bulk", json={"rows": rows})).json()
    again = (await api.client.post("/customers/bulk", json={"rows": rows})).json()
    assert (first["created"], again["created"], again["existing"]) == (20, 0, 20)
    assert [r["id"] for r in again["rows"]] == [r["id"] for r in first["rows"]]
    assert len(await api.events("customer.created")) == 20


async def test_more_than_5000_rows_is_a_422_naming_rows(api):
    response = await api.client.post("/customers/bulk", json={"rows": [{"name": "x"}] * 5001})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["rows"]


async def test_5000_rows_are_imported_in_one_request(api):
    rows = [
        {"name": f"Customer {i}", "external_ref": f"BULK-{i}", "tags": ["import"], "attributes": {"n": i}}
        for i in range(5000)
    ]
    report = (await api.client.post("/customers/bulk", json={"rows": rows})).json()
    assert report["created"] == 5000
    assert await _count(api, CustomerAttribute) == 5000
    assert len(await api.events("customer.created")) == 5000


async def test_a_large_import_lets_the_loop_s_other_tasks_run_every_slice_of_rows(api):
    # A relay or consumer on the same event loop (make run's layout) waits for such turns.
    rows = [{"name": f"Customer {i}", "external_ref": f"T-{i}"} for i in range(20 * ROWS_PER_TURN)]
    async with other_task_turns() as turns:
        response = await api.client.post("/customers/bulk", json={"rows": rows})
    assert response.json()["created"] == len(rows)
    # validation, the rows' values and their events each give a turn per slice
    assert turns[0] >= 3 * (len(rows) // ROWS_PER_TURN - 1)
    assert len(await api.events("customer.created")) == len(rows)
