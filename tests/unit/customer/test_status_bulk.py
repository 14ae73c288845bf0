"""POST /customers/status/bulk and the internal POST /customers/lookup."""

from datetime import UTC, datetime

from sqlalchemy import update

from contracts.customer import team_attribute, tier_attribute
from servicekit.turns import ROWS_PER_TURN
from services.customer.customers.models import Customer
from tests.unit.loop_turns import other_task_turns


async def test_each_row_is_applied_or_rejected_on_its_own_with_the_single_route_s_events(api):
    a, b, c = [await api.create() for _ in range(3)]
    prospect = await api.create(status="prospect")
    rows = [
        {"customer_id": a["id"], "status": "churned", "reason": "price", "churned_at": "2025-03-01"},
        {"customer_id": b["id"], "status": "churned"},  # reason and churned_at missing
        {"customer_id": "no-such-customer", "status": "churned", "reason": "price", "churned_at": "2025-03-01"},
        {"customer_id": prospect["id"], "status": "won_back"},  # outside the lifecycle
        "not an object",
        {"customer_id": c["id"], "status": "churned", "reason": "competitor", "churned_at": "2024-11-30"},
    ]
    response = await api.client.post("/customers/status/bulk", json={"rows": rows})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["changed"], report["unchanged"], report["rejected"]) == (2, 0, 4)
    assert [r["status"] for r in report["rows"]] == [
        "changed",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "changed",
    ]
    assert {e["field"] for e in report["rows"][1]["errors"]} == {"reason", "churned_at"}
    assert report["rows"][2]["code"] == "not_found"
    assert report["rows"][3]["code"] == "invalid_transition"
    assert report["rows"][4]["errors"][0]["field"] == "row"
    assert report["rows"][0]["version"] == 2
    events = await api.events("customer.status_changed")
    assert [(e["data"]["customer_id"], e["data"]["churned_at"], e["data"]["reason"]) for e in events] == [
        (a["id"], "2025-03-01", "price"),
        (c["id"], "2024-11-30", "competitor"),
    ]
    assert all("side" in e["data"] for e in events)  # the same churn facts as the single route
    history = (await api.client.get(f"/customers/{a['id']}/status-history")).json()
    assert history["items"][0]["status"] == "churned"
    untouched = (await api.client.get(f"/customers/{b['id']}")).json()
    assert (untouched["status"], untouched["version"]) == ("active", 1)


async def test_a_resent_row_is_unchanged_and_writes_nothing(api):
    a = await api.create()
    row = {"customer_id": a["id"], "status": "churned", "reason": "price", "churned_at": "2025-03-01"}
    first = (await api.client.post("/customers/status/bulk", json={"rows": [row]})).json()
    again = (await api.client.post("/customers/status/bulk", json={"rows": [row]})).json()
    assert first["rows"][0]["status"] == "changed"
    assert again["rows"][0] == {"index": 0, "status": "unchanged", "customer_id": a["id"], "version": 2}
    assert len(await api.events("customer.status_changed")) == 1


async def test_an_idempotency_key_answers_the_first_report_and_refuses_another_body(api):
    a, b = await api.create(), await api.create()
    row = {"customer_id": a["id"], "status": "churned", "reason": "price", "churned_at": "2025-03-01"}
    headers = {"Idempotency-Key": "import-1"}
    first = await api.client.post("/customers/status/bulk", json={"rows": [row]}, headers=headers)
    replay = await api.client.post("/customers/status/bulk", json={"rows": [row]}, headers=headers)
    assert first.json() == replay.json() and replay.json()["rows"][0]["status"] == "changed"
    other = {**row, "customer_id": b["id"]}
    refused = await api.client.post("/customers/status/bulk", json={"rows": [other]}, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "header.idempotency-key"
    assert len(await api.events("customer.status_changed")) == 1


async def test_an_empty_or_oversized_request_is_a_422_naming_rows(api):
    for rows in ([], [{"customer_id": "x", "status": "active"}] * 5001):
        response = await api.client.post("/customers/status/bulk", json={"rows": rows})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "rows"


async def test_lookup_answers_existing_erased_and_unknown_ids_without_personal_data(api):
    a = await api.create(external_ref="ERP-1", email="a@example.com")
    gone = await api.create(external_ref="ERP-2")
    assert (await api.client.delete(f"/customers/{gone['id']}")).status_code == 202
    response = await api.client.post("/customers/lookup", json={"ids": [gone["id"], "nobody", a["id"], a["id"]]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unknown"] == ["nobody"]
    by_id = {c["id"]: c for c in body["customers"]}
    assert (by_id[a["id"]]["erased"], by_id[a["id"]]["external_ref"], by_id[a["id"]]["status"]) == (
        False,
        "ERP-1",
        "active",
    )
    assert (by_id[gone["id"]]["erased"], by_id[gone["id"]]["external_ref"]) == (True, None)
    assert "a@example.com" not in response.text
    assert (await api.client.post("/customers/lookup", json={"ids": []})).status_code == 422


async def test_a_customer_named_twice_moves_twice_and_later_rows_see_the_earlier_ones(api):
    a = await api.create()
    gone = await api.create()
    assert (await api.client.delete(f"/customers/{gone['id']}")).status_code == 202
    rows = [
        {"customer_id": a["id"], "status": "churned", "reason": "price", "churned_at": "2025-03-01"},
        {"customer_id": a["id"], "status": "active"},  # churned -> active is not the lifecycle: won_back is
        {"customer_id": a["id"], "status": "won_back", "note": "came back"},
        {"customer_id": a["id"], "status": "won_back"},  # already won back by the row before
        {"customer_id": gone["id"], "status": "churned", "reason": "price", "churned_at": "2025-03-01"},
    ]
    report = (await api.client.post("/customers/status/bulk", json={"rows": rows})).json()
    assert [(r["status"], r.get("version"), r.get("code")) for r in report["rows"]] == [
        ("changed", 2, None),
        ("rejected", None, "invalid_transition"),
        ("changed", 3, None),
        ("unchanged", 3, None),
        ("rejected", None, "erased"),
    ]
    assert report["rows"][1]["errors"] == [
        {"field": "status", "message": "A churned customer who returns is won_back, not active."}
    ]
    customer = (await api.client.get(f"/customers/{a['id']}")).json()
    assert (customer["status"], customer["version"], customer["churned_at"], customer["churn_reason"]) == (
        "won_back",
        3,
        "2025-03-01",
        "price",
    )
    history = (await api.client.get(f"/customers/{a['id']}/status-history")).json()["items"]
    assert [(h["previous_status"], h["status"], h["version"], h["note"]) for h in history[:2]] == [
        ("churned", "won_back", 3, "came back"),
        ("active", "churned", 2, None),
    ]
    events = await api.events("customer.status_changed")
    assert [(e["data"]["previous_status"], e["data"]["status"], e["data"]["version"]) for e in events] == [
        ("active", "churned", 2),
        ("churned", "won_back", 3),
    ]


async def test_bulk_and_single_changes_leave_the_same_record_history_and_event(api):
    bulk, single = await api.create(), await api.create()
    change = {"status": "churned", "reason": "competitor", "churned_at": "2025-01-31", "note": "moved"}
    assert (await api.client.post(f"/customers/{single['id']}/status", json=change)).status_code == 200
    response = await api.client.post("/customers/status/bulk", json={"rows": [{"customer_id": bulk["id"], **change}]})
    assert response.json()["changed"] == 1

    def comparable(body: dict) -> dict:
        return {k: v for k, v in body.items() if k not in {"id", "customer_id", "changed_at", "time"}}

    records = [(await api.client.get(f"/customers/{c['id']}")).json() for c in (single, bulk)]
    keys = ("status", "churned_at", "churn_reason", "version")
    assert [tuple(r[k] for k in keys) for r in records] == [("churned", "2025-01-31", "competitor", 2)] * 2
    histories = [
        (await api.client.get(f"/customers/{c['id']}/status-history")).json()["items"][0] for c in (single, bulk)
    ]
    assert comparable(histories[0]) == comparable(histories[1])
    single_event, bulk_event = [e["data"] for e in await api.events("customer.status_changed")]
    assert comparable(single_event) == comparable(bulk_event)


async def test_lookup_with_profile_answers_what_the_customer_events_carry_for_a_replica_backfill(api):
    a = await api.create(owner="u-ann", segment="smb", attributes={"plan": "gold", "tier": "gold", "team": "north"})
    gone = await api.create(owner="u-bob", segment="smb")
    assert (await api.client.delete(f"/customers/{gone['id']}")).status_code == 202
    scored_at = datetime(2026, 12, 1, tzinfo=UTC)
    async with api.database.transaction() as session:
        await session.execute(update(Customer).values(scored_tier="iron", scored_tier_at=scored_at))

    plain = (await api.client.post("/customers/lookup", json={"ids": [a["id"]]})).json()["customers"][0]
    response = await api.client.post("/customers/lookup", json={"ids": [a["id"], gone["id"]], "profile": True})

    assert response.status_code == 200, response.text
    by_id = {c["id"]: c for c in response.json()["customers"]}
    mine = by_id[a["id"]]
    assert (mine["owner"], mine["segment"], mine["scored_tier"]) == ("u-ann", "smb", "iron")
    assert datetime.fromisoformat(mine["scored_tier_at"]) == scored_at
    # Team and tier only as the customer's events carry them (the attributes declared non-personal).
    carried = (await api.events("customer.created"))[0]["data"]["attributes"]
    assert (mine["team"], mine["tier"]) == (team_attribute(carried), tier_attribute(carried))
    assert plain["owner"] is None and plain["segment"] is None  # asked without profile: ids and status only
    erased = by_id[gone["id"]]
    assert erased["erased"] and (erased["owner"], erased["segment"], erased["scored_tier"]) == (None, None, None)


async def test_a_large_status_import_lets_the_loop_s_other_tasks_run_every_slice_of_rows(api):
    created = (
        await api.client.post("/customers/bulk", json={"rows": [{"name": f"C {i}"} for i in range(10 * ROWS_PER_TURN)]})
    ).json()
    rows = [
        {"customer_id": row["id"], "status": "churned", "reason": "price", "churned_at": "2025-03-01"}
        for row in created["rows"]
    ]
    async with other_task_turns() as turns:
        response = await api.client.post("/customers/status/bulk", json={"rows": rows})
    assert response.json()["changed"] == len(rows)
    # validation, the decisions and the events each give a turn per slice
    assert turns[0] >= 3 * (len(rows) // ROWS_PER_TURN - 1)
    assert len(await api.events("customer.status_changed")) == len(rows)
