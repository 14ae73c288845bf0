"""The gateway's own routes refuse NUL characters and out-of-range paging like every service does."""

import httpx

from servicekit.pagination import MAX_OFFSET


def _fields(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"] for e in response.json()["errors"]}


async def test_a_nul_in_a_gateway_route_is_a_422_naming_the_field(gateway: httpx.AsyncClient) -> None:
    assert _fields(await gateway.get("/api/v1/keys/k%001")) == {"path.key_id"}
    assert _fields(await gateway.get("/api/v1/customers/c%001/360")) == {"path.customer_id"}
    assert _fields(await gateway.post("/api/v1/keys", json={"name": "erp\x00", "role": "integration"})) == {"name"}


async def test_an_offset_past_the_bound_on_the_key_list_is_a_422_naming_it(gateway: httpx.AsyncClient) -> None:
    assert _fields(await gateway.get("/api/v1/keys", params={"offset": MAX_OFFSET + 1})) == {"query.offset"}
    assert (await gateway.get("/api/v1/keys", params={"offset": MAX_OFFSET})).status_code == 200
