"""Overload: over a service's admission limit the gateway sheds requests with 503, Retry-After and a problem
body before forwarding them, and every request it acknowledged is stored.

A gateway of its own (in this process, on the real services) gets a tiny admission limit: one request in
flight per service and no queue, so concurrent requests are shed; the shared gateway keeps its defaults.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.settings import GatewaySettings
from runner.launcher import Platform
from servicekit.auth import InternalAuthSettings
from tests.e2e.helpers import create_customer
from tests.platform import new_database, service_url, token

pytestmark = pytest.mark.e2e


@pytest.fixture
async def tight_gateway(platform: Platform) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    async with new_database() as url:
        settings = GatewaySettings(
            database_url=url,
            rate_limit=False,
            admission_max_inflight=1,
            admission_min_inflight=1,
            admission_queue_s=0,
            admission_queue_max=0,
            **{f"{name}_url": service_url(name) for name in ("customer", "interaction", "scoring", "retention")},
        )
        # Signing its calls into the services with the running platform's secret.
        internal = InternalAuthSettings(internal_token=platform.specs["gateway"].env["CRM_INTERNAL_TOKEN"])
        app = create_app(settings, internal=internal)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {token()}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers) as client:
                yield app, client


def _note(customer_id: str, n: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "type": "call",
        "channel": "phone",
        "initiated_by": "company",
        "text": f"Follow-up call {n}.",
        "external_id": f"overload-{uuid.uuid4()}",
    }


def _shed_count() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "crm_gateway_shed"
        for sample in metric.samples
        if sample.name == "crm_gateway_shed_total" and sample.labels.get("service") == "interaction"
    )


async def test_over_the_admission_limit_requests_are_shed_with_retry_after_and_acknowledged_ones_are_stored(
    tight_gateway: tuple[Any, httpx.AsyncClient], gateway: httpx.AsyncClient
) -> None:
    app, client = tight_gateway
    customer = await create_customer(gateway)
    shed_before = _shed_count()

    # The interaction service's only slot is taken: a request to it is shed at once, never forwarded.
    await app.state.admission.acquire("interaction")
    held = _note(customer["id"], 0)
    refused = await client.post("/api/v1/interactions", json=held)
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert (
        problem["status"] == 503
        and problem["type"] == "urn:crm:problem:overloaded"
        and "interaction" in problem["detail"]
    )
    # Other services keep their own slots.
    assert (await client.get(f"/api/v1/customers/{customer['id']}")).status_code == 200
    app.state.admission.release("interaction", None)

    # Many at once: one in flight at a time, the rest shed; each answer is one or the other.
    bodies = [_note(customer["id"], n) for n in range(1, 25)]
    answers = await asyncio.gather(*(client.post("/api/v1/interactions", json=b) for b in bodies))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {201, 503}, statuses
    assert 201 in statuses and 503 in statuses, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "1" and answer.json()["type"] == "urn:crm:problem:overloaded"
    assert _shed_count() - shed_before == 1 + statuses.count(503)

    # Nothing acknowledged is lost, nothing shed was stored: the customer's timeline holds exactly the 201s.
    acknowledged = {a.json()["id"] for a in answers if a.status_code == 201}
    timeline = await gateway.get(f"/api/v1/customers/{customer['id']}/interactions", params={"limit": 100})
    assert timeline.status_code == 200, timeline.text
    stored = {item["id"] for item in timeline.json()["items"]}
    assert stored == acknowledged
    stored_external = {item["external_id"] for item in timeline.json()["items"]}
    shed_external = {held["external_id"]} | {
        b["external_id"] for b, a in zip(bodies, answers, strict=True) if a.status_code == 503
    }
    assert not stored_external & shed_external

    # A shed request sent again once there is room is accepted.
    again = await client.post("/api/v1/interactions", json=held)
    assert again.status_code == 201, again.text
