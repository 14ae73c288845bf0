"""crm import on the real platform: an import interrupted halfway and resumed stores exactly the rows of an
uninterrupted one, nothing twice and nothing skipped (counted in the stores through the gateway)."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import httpx
import pytest

from cli.client import Gateway
from cli.importer import Checkpoint, Importer, Settings
from cli.main import main as crm
from cli.mapping import build
from cli.sources import open_source
from tests.e2e.conftest import GATEWAY, token

pytestmark = pytest.mark.e2e

ROWS_PER_CUSTOMER = 12
KINDS = ("purchase", "call", "complaint", "survey")


def history(path: Path, refs: list[str]) -> Path:
    """The same history for each customer: purchases, calls, complaints and surveys, oldest first."""
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["Customer", "Kind", "When", "Amount", "Currency", "Severity", "Survey", "Score"])
        for i in range(ROWS_PER_CUSTOMER):
            for ref in refs:
                kind = KINDS[i % len(KINDS)]
                writer.writerow([
                    ref, kind, f"2025-{1 + i % 12:02d}-{1 + i:02d}T10:00:00Z",
                    f"{10 + i}.50" if kind == "purchase" else "", "EUR" if kind == "purchase" else "",
                    "medium" if kind == "complaint" else "", "nps" if kind == "survey" else "",
                    str(i % 11) if kind == "survey" else "",
                ])  # fmt: skip
    return path


MAPPING = {"customer_ref": "Customer", "type": "Kind", "occurred_at": "When", "amount": "Amount",
           "currency": "Currency", "severity": "Severity", "survey": "Survey", "score": "Score"}  # fmt: skip


def run_import(client: Gateway, path: Path, **settings) -> object:
    source = open_source(path)
    mapping, _ = build("interactions", source.columns, MAPPING)
    return Importer(source, mapping, Settings("interactions", chunk_size=10, **settings), gateway=client).run()


async def timeline(gateway: httpx.AsyncClient, customer_id: str) -> list[tuple]:
    page = (await gateway.get(f"/api/v1/customers/{customer_id}/interactions", params={"limit": 200})).json()
    return sorted((i["type"], i["occurred_at"], i.get("amount"), i.get("score")) for i in page["items"])


async def test_an_interrupted_and_resumed_import_stores_exactly_the_rows_of_an_uninterrupted_one(
    gateway: httpx.AsyncClient, tmp_path: Path, capsys
):
    run = uuid.uuid4().hex[:8]
    plain, resumed = [f"{run}-p{i}" for i in range(3)], [f"{run}-r{i}" for i in range(3)]
    customers = tmp_path / "customers.csv"
    customers.write_text("Name,Ref,Plan\n" + "".join(f"Customer {r},{r},pro\n" for r in plain + resumed))
    with Gateway(GATEWAY, token=token()) as client:
        assert crm(["import", "customers", str(customers), "--map", "name=Name", "--map", "external_ref=Ref",
                    "--map", "attributes.plan=Plan"], gateway=client) == 0  # fmt: skip
        # Interactions straight after their customers, by the customers' own references.
        uninterrupted = run_import(client, history(tmp_path / "plain.csv", plain))
        assert (uninterrupted.created, uninterrupted.rejected) == (36, 0)

        path = history(tmp_path / "resumed.csv", resumed)

        def stop(batches: int) -> None:
            if batches == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_import(client, path, after_batch=stop)
        checkpoint = Checkpoint.load(tmp_path / "resumed.csv.interactions.checkpoint.json")
        assert checkpoint is not None and (checkpoint.batches, checkpoint.created) == (2, 20)
        outcome = run_import(client, path)
        assert (outcome.resumed_from, outcome.created, outcome.existing, outcome.rejected) == (21, 36, 0, 0)

        # Sent once more from the start: every row is already there.
        again = run_import(client, path, restart=True)
        assert (again.created, again.existing) == (0, 36)

    ids = {}
    for ref in plain + resumed:
        page = (await gateway.get("/api/v1/customers", params={"external_ref": ref})).json()
        assert page["total"] == 1
        ids[ref] = page["items"][0]["id"]
        assert page["items"][0]["attributes"] == {"plan": "pro"}
    for p, r in zip(plain, resumed, strict=True):
        expected = await timeline(gateway, ids[p])
        assert len(expected) == ROWS_PER_CUSTOMER
        assert await timeline(gateway, ids[r]) == expected

    # Statuses by reference: through the bulk route, or one change per customer where there is none.
    statuses = tmp_path / "statuses.csv"
    statuses.write_text(f"customer_ref,status,reason,churned_at\n{resumed[0]},churned,price,2026-03-01\n")
    with Gateway(GATEWAY, token=token()) as client:
        assert crm(["import", "statuses", str(statuses)], gateway=client) == 0, capsys.readouterr()
    customer = (await gateway.get(f"/api/v1/customers/{ids[resumed[0]]}")).json()
    assert (customer["status"], customer["churn_reason"], customer["churned_at"]) == ("churned", "price", "2026-03-01")
