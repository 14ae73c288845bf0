"""Bulk routes cost rows of a per-caller row quota; every 429 and 503 carries Retry-After."""

import httpx

from gateway.bulk_limits import count_rows
from servicekit.problems import problem_response
from tests.unit.gateway.conftest import StartGateway, bearer
from tests.unit.gateway.fakes import FakeService


def rows(n: int) -> dict:
    return {"rows": [{"customer_id": f"c-{i}", "type": "call"} for i in range(n)]}


def test_rows_are_counted_from_the_body_and_anything_else_costs_one():
    assert count_rows(b'{"rows": [1, 2, 3]}') == 3
    assert count_rows(b'{"rows": []}') == 1
    assert count_rows(b"not json") == 1
    assert count_rows(b"[1, 2]") == 1


async def test_bulk_requests_are_limited_by_rows_not_by_requests(start_gateway: StartGateway, fakes) -> None:
    gateway = await start_gateway(
        as_role="importer",
        bulk_rows_per_s={"importer": 100.0},
        rate_limits={"importer": 1000.0},
        rate_burst_factor=2.0,
    )
    # A bucket holds one full request (5,000 rows) whatever the rate: 3,000 then 1,500 rows pass.
    assert (await gateway.post("/api/v1/interactions/bulk", json=rows(3000))).status_code == 200
    assert (await gateway.post("/api/v1/interactions/bulk", json=rows(1500))).status_code == 200
    refused = await gateway.post("/api/v1/interactions/bulk", json=rows(3000))
    assert refused.status_code == 429
    assert refused.json()["type"] == "urn:crm:problem:rate_limited"
    # The wait is for the whole batch to fit: about 2,500 rows at 100 rows/s.
    assert 20 <= int(refused.headers["retry-after"]) <= 30
    # Small requests are cheap in rows: the same caller's next 400 one-row requests would pass the
    # request quota too; a small batch still fits the rows left.
    assert (await gateway.post("/api/v1/interactions/bulk", json=rows(400))).status_code == 200
    # Nothing reached the service for the refused request.
    bulk_posts = [s for s in fakes["interaction"].seen if s.path == "/interactions/bulk"]
    assert len(bulk_posts) == 3 and len(httpx.Response(200, content=bulk_posts[0].body).json()["rows"]) == 3000
    # Another caller has its own row bucket; other routes cost no rows.
    other = await gateway.post(
        "/api/v1/interactions/bulk", json=rows(3000), headers=bearer("importer", sub="other-importer")
    )
    assert other.status_code == 200


async def test_the_importer_role_may_only_load_data(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role="importer")
    assert (await gateway.post("/api/v1/customers/status/bulk", json=rows(1))).status_code == 200
    # The ids of the references its files name, without reading customers (crm import's customer_ref).
    assert (await gateway.post("/api/v1/customers/resolve", json={"external_refs": ["r-1"]})).status_code == 200
    assert (await gateway.get("/api/v1/customers")).status_code == 403
    assert (await gateway.get("/api/v1/alerts")).status_code == 403


async def test_agents_and_managers_may_not_resolve_references(start_gateway: StartGateway, fakes) -> None:
    for role in ("agent", "manager"):
        gateway = await start_gateway(as_role=role)
        refused = await gateway.post("/api/v1/customers/resolve", json={"external_refs": ["r-1"]})
        assert refused.status_code == 403, role
    assert not [s for s in fakes["customer"].seen if s.path == "/customers/resolve"]


async def test_a_service_s_503_or_429_without_retry_after_gets_one(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    fakes["customer"].ready = False
    gateway = await start_gateway()
    ready = await gateway.get("/health/ready")
    assert ready.status_code == 503 and int(ready.headers["retry-after"]) >= 1
    busy = await gateway.get("/api/v1/customers/busy")
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"


def test_every_problem_429_and_503_says_when_to_come_back():
    for status in (429, 503):
        assert problem_response(status, "x").headers["retry-after"] == "1"
        assert problem_response(status, "x", headers={"Retry-After": "7"}).headers["retry-after"] == "7"
    assert "retry-after" not in problem_response(404, "x").headers
