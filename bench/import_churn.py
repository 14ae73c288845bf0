"""The import bench's churn-label comparison: the same churns imported on the customers or changed afterwards.

`--churn-on-import` moves the generated statuses (status, churned_at, churn_reason) into customers.csv and
its mapping, so customers arrive already churned and no statuses file is imported; without it they arrive
active and `crm import statuses` churns them after their history. `--train` then trains the churn model
(not activated) through the gateway and reports its cross-validated AUC and the examples per class: the
two runs must agree (issue 27: within 0.01).
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path
from typing import Any

import httpx

from cli.generate import MODEL_ATTRIBUTES

# Only attributes the customer service declares non-personal travel in its events to the churn model.
KEEP_ATTRIBUTES_ENV = {"CUSTOMER_ERASURE_KEEP_ATTRIBUTES": json.dumps(["tier", "value_tier", *MODEL_ATTRIBUTES])}
TRAIN_TIMEOUT_S = 600


def churn_on_import(data: Path) -> int:
    """Rewrite customers.csv (and customers.yaml) to carry each churned customer's status; returns how many."""
    with (data / "statuses.csv").open(newline="", encoding="utf-8") as stream:
        churns = {row["customer_ref"]: row for row in csv.DictReader(stream)}
    with (data / "customers.csv").open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = [*(reader.fieldnames or []), "status", "churned_at", "churn_reason"]
        rows = list(reader)
    for row in rows:
        churn = churns.get(row["external_ref"])
        row.update(status="churned" if churn else "active", churned_at=churn["churned_at"] if churn else "",
                   churn_reason=churn["reason"] if churn else "")  # fmt: skip
    with (data / "customers.csv").open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with (data / "customers.yaml").open("a", encoding="utf-8") as stream:
        stream.write('status: "status"\nchurned_at: "churned_at"\nchurn_reason: "churn_reason"\n')
    return len(churns)


async def train_churn(gateway_url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Train the churn model (not activated) and report what it used and its cross-validated quality."""
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=60) as gateway:
        response = await gateway.post("/api/v1/models/churn/train", json={"activate": False})
        response.raise_for_status()
        job_id = response.json()["id"]
        started = time.perf_counter()
        while time.perf_counter() - started < TRAIN_TIMEOUT_S:
            job = (await gateway.get(f"/api/v1/jobs/{job_id}")).json()
            if job["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(1)
    if job["status"] != "succeeded":
        return {"status": job["status"], "message": job.get("message")}
    metrics = job["result"]["metrics"]
    return {
        "status": "succeeded",
        "used": job["result"]["data"]["used"],
        "model_roc_auc": metrics["model"]["roc_auc"],
        "baseline_logistic_roc_auc": metrics["baseline_logistic"]["roc_auc"],
        "features": metrics["features"],
    }
