"""Bulk import of interactions through the gateway, on PostgreSQL: good rows stored, bad rows reported."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from cli.client import Gateway
from cli.main import main as crm
from tests.e2e.conftest import GATEWAY, token
from tests.e2e.helpers import create_customer

pytestmark = pytest.mark.e2e


def purchase(customer_id: str, external_id: str, **fields) -> dict:
    return {
        "customer_id": customer_id,
        "type": "purchase",
        "amount": "12.50",
        "currency": "EUR",
        "occurred_at": "2025-06-01T10:00:00Z",
        "external_id": external_id,
        **fields,
    }


async def test_a_bulk_import_with_bad_rows_stores_the_good_ones_and_reports_the_bad_ones(gateway: httpx.AsyncClient):
    customer = await create_customer(gateway)
    run = uuid.uuid4().hex[:8]
    items = [
        purchase(customer["id"], f"{run}-1"),
        purchase(customer["id"], f"{run}-2", amount=None),  # a purchase needs an amount
        purchase("no-such-customer", f"{run}-3"),
        {"customer_id": customer["id"], "type": "complaint", "severity": "medium", "category": "billing"},
        purchase(customer["id"], f"{run}-4", currency="euro"),
    ]
    response = await gateway.post("/api/v1/interactions/bulk", json={"rows": items})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["existing"], report["rejected"]) == (2, 0, 3)
    statuses = [(r["index"], r["status"]) for r in report["rows"]]
    assert statuses == [(0, "created"), (1, "rejected"), (2, "rejected"), (3, "created"), (4, "rejected")]
    assert report["rows"][1]["errors"][0]["field"] == "amount"
    assert report["rows"][2]["errors"] == [{"field": "customer_id", "message": "unknown customer"}]
    assert report["rows"][4]["errors"][0]["field"] == "currency"

    timeline = (await gateway.get(f"/api/v1/customers/{customer['id']}/interactions")).json()
    assert sorted(i["id"] for i in timeline["items"]) == sorted([report["rows"][0]["id"], report["rows"][3]["id"]])

    again = (await gateway.post("/api/v1/interactions/bulk", json={"rows": items[:1]})).json()
    assert (again["existing"], again["rows"][0]["id"]) == (1, report["rows"][0]["id"])


async def test_five_thousand_interactions_import_in_one_request(gateway: httpx.AsyncClient):
    customers = [await create_customer(gateway) for _ in range(50)]
    run = uuid.uuid4().hex[:8]
    items = [purchase(customers[i % 50]["id"], f"{run}-{i}") for i in range(5000)]
    started = time.perf_counter()
    response = await gateway.post("/api/v1/interactions/bulk", json={"rows": items}, timeout=120)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 5000
    print(f"\nbulk import of 5000 interactions through the gateway on PostgreSQL: {elapsed:.2f} s")


async def test_the_cli_imports_a_csv_and_lists_rejected_rows_by_line(
    gateway: httpx.AsyncClient, tmp_path: Path, capsys
):
    customer = await create_customer(gateway)
    run = uuid.uuid4().hex[:8]
    csv = tmp_path / "history.csv"
    csv.write_text(
        "customer_id,type,occurred_at,amount,currency,external_id\n"
        f"{customer['id']},purchase,2025-01-01,10.00,EUR,{run}-a\n"
        f"{customer['id']},purchase,2025-01-02,,EUR,{run}-b\n"
        f"{customer['id']},call,2025-01-03,,,{run}-c\n"
    )
    with Gateway(GATEWAY, token=token()) as client:
        code = crm(["import", "interactions", str(csv)], gateway=client)
    out = capsys.readouterr().out
    assert code == 1, out
    assert "2 created, 0 already there, 1 rejected" in out
    assert "line 3: amount" in out


async def test_single_posts_and_bulk_rows_racing_on_one_external_id_store_one_interaction(gateway: httpx.AsyncClient):
    # Single posts and bulk rows go through one store path: whichever commits first creates the
    # interaction, every other request answers with that same interaction.
    customer = await create_customer(gateway)
    row = purchase(customer["id"], f"race-{uuid.uuid4().hex[:8]}")
    singles = [gateway.post("/api/v1/interactions", json=row) for _ in range(6)]
    bulks = [gateway.post("/api/v1/interactions/bulk", json={"rows": [row, row]}) for _ in range(2)]
    responses = await asyncio.gather(*singles, *bulks)

    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    single_answers = [(r.status_code, r.json()["id"]) for r in responses[:6]]
    bulk_rows = [row for r in responses[6:] for row in r.json()["rows"]]
    ids = {id_ for _, id_ in single_answers} | {row["id"] for row in bulk_rows}
    assert len(ids) == 1
    created = sum(code == 201 for code, _ in single_answers) + sum(r["status"] == "created" for r in bulk_rows)
    assert created == 1
    assert {row["status"] for row in bulk_rows} <= {"created", "existing"}
    timeline = (await gateway.get(f"/api/v1/customers/{customer['id']}/interactions")).json()
    assert [i["id"] for i in timeline["items"]] == list(ids)
