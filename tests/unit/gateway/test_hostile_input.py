"""The gateway refuses NUL characters (in the path at the edge, in bodies per route) and out-of-range
paging like every service does."""

import httpx

from servicekit.pagination import MAX_OFFSET


def _fields(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"] for e in response.json()["errors"]}


async def test_a_nul_in_a_gateway_route_body_is_a_422_naming_the_field(gateway: httpx.AsyncClient) -> None:
    assert _fields(await gateway.post("/api/v1/keys", json={"name": "erp\x00", "role": "integration"})) == {"name"}


async def test_a_nul_in_the_path_is_refused_at_the_edge_as_a_400_naming_the_path(gateway: httpx.AsyncClient) -> None:
    # A NUL has no canonical spelling (gateway.canonical): refused before any route sees it.
    for path in ("/api/v1/keys/k%001", "/api/v1/customers/c%001/360"):
        response = await gateway.get(path)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert {e["field"] for e in response.json()["errors"]} == {"path"}


async def test_an_offset_past_the_bound_on_the_key_list_is_a_422_naming_it(gateway: httpx.AsyncClient) -> None:
    assert _fields(await gateway.get("/api/v1/keys", params={"offset": MAX_OFFSET + 1})) == {"query.offset"}
    assert (await gateway.get("/api/v1/keys", params={"offset": MAX_OFFSET})).status_code == 200
