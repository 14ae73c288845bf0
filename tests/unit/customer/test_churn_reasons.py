"""Churn reasons: the full taxonomy with side and voluntariness, required on every path that churns."""

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from servicekit.migrations import alembic_config
from services.customer.status.lifecycle import REASON_FACTS, ChurnReason, ChurnSide

ROOT = Path(__file__).resolve().parents[3]


def test_every_reason_code_carries_its_side_and_voluntariness() -> None:
    assert set(REASON_FACTS) == set(ChurnReason)
    company = {r.value for r, f in REASON_FACTS.items() if f.side == ChurnSide.company}
    customer = {r.value for r, f in REASON_FACTS.items() if f.side == ChurnSide.customer}
    company_side = {"product_quality", "poor_service", "staff_turnover", "lack_of_innovation", "deliberately_dropped"}
    assert company_side <= company
    assert {"competitor", "changed_needs", "bad_faith_departure", "relocation", "closure"} <= customer
    involuntary = {r.value for r, f in REASON_FACTS.items() if not f.voluntary}
    assert involuntary == {"deliberately_dropped", "relocation", "closure"}


async def test_churning_carries_side_and_voluntary_in_the_event_and_history(api) -> None:
    customer = await api.create()
    response = await api.client.post(
        f"/customers/{customer['id']}/status",
        json={"status": "churned", "reason": "lack_of_innovation", "churned_at": "2026-01-15", "note": "old app"},
    )
    assert response.status_code == 200, response.text
    [event] = await api.events("customer.status_changed")
    assert (event["data"]["reason"], event["data"]["side"], event["data"]["voluntary"]) == (
        "lack_of_innovation",
        "company",
        True,
    )
    [latest, _] = (await api.client.get(f"/customers/{customer['id']}/status-history")).json()["items"]
    assert (latest["reason"], latest["side"], latest["voluntary"], latest["note"]) == (
        "lack_of_innovation",
        "company",
        True,
        "old app",
    )


async def test_the_retired_code_service_quality_is_still_accepted_and_read_as_poor_service(api) -> None:
    customer = await api.create()
    response = await api.client.post(
        f"/customers/{customer['id']}/status",
        json={"status": "churned", "reason": "service_quality", "churned_at": "2026-01-15"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["churn_reason"] == "poor_service"


async def test_an_imported_churned_customer_needs_a_reason_and_keeps_its_note(api) -> None:
    rows = [
        {"name": "No reason", "status": "churned", "churned_at": "2025-05-01"},
        {
            "name": "Moved",
            "status": "churned",
            "churned_at": "2025-05-01",
            "churn_reason": "relocation",
            "churn_note": "moved to Lyon",
        },
        {"name": "Bad code", "status": "churned", "churned_at": "2025-05-01", "churn_reason": "bored"},
    ]
    report = (await api.client.post("/customers/bulk", json={"rows": rows})).json()
    statuses = [r["status"] for r in report["rows"]]
    assert statuses == ["rejected", "created", "rejected"]
    assert [e["field"] for e in report["rows"][0]["errors"]] == ["churn_reason"]
    assert [e["field"] for e in report["rows"][2]["errors"]] == ["churn_reason"]
    history = (await api.client.get(f"/customers/{report['rows'][1]['id']}/status-history")).json()["items"]
    assert (history[0]["reason"], history[0]["side"], history[0]["voluntary"], history[0]["note"]) == (
        "relocation",
        "customer",
        False,
        "moved to Lyon",
    )
    [created] = await api.events("customer.created")
    assert (created["data"]["churn_reason"], created["data"]["side"], created["data"]["voluntary"]) == (
        "relocation",
        "customer",
        False,
    )


def test_the_migration_rewrites_stored_service_quality_as_poor_service(tmp_path: Path) -> None:
    path = tmp_path / "customer.db"
    url = f"sqlite+aiosqlite:///{path}"
    config = alembic_config(ROOT / "services/customer/migrations", url, "customer")
    command.upgrade(config, "3b8e5d1c9f27")
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers (id, kind, name, contacts, status, status_changed_at, churned_at, churn_reason,"
                " tags, attributes, version, created_at, updated_at) VALUES ('c1', 'person', 'A', '[]', 'churned',"
                " '2026-01-01', '2026-01-01', 'service_quality', '[]', '{}', 1, '2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO status_changes (customer_id, status, reason, version, changed_at)"
                " VALUES ('c1', 'churned', 'service_quality', 1, '2026-01-01')"
            )
        )
    command.upgrade(config, "head")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT churn_reason FROM customers")).scalar_one() == "poor_service"
        assert conn.execute(sa.text("SELECT reason FROM status_changes")).scalar_one() == "poor_service"
    engine.dispose()
