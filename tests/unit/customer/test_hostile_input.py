"""Input that PostgreSQL cannot take (NUL characters, offsets past bigint) is a 422 naming the field."""

import pytest

from servicekit.pagination import MAX_OFFSET


def fields(response) -> set[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"] for e in response.json()["errors"]}


@pytest.mark.parametrize("offset", [MAX_OFFSET + 1, 2**63, 10**30])
async def test_an_offset_beyond_the_bound_is_refused_naming_it(api, offset):
    assert fields(await api.client.get("/customers", params={"offset": offset})) == {"query.offset"}
    customer = await api.create()
    history = await api.client.get(f"/customers/{customer['id']}/status-history", params={"offset": offset})
    assert fields(history) == {"query.offset"}


async def test_the_largest_offset_allowed_is_an_empty_page(api):
    await api.create()
    response = await api.client.get("/customers", params={"offset": MAX_OFFSET})
    assert response.status_code == 200
    assert (response.json()["items"], response.json()["total"]) == ([], 1)


async def test_a_nul_in_a_query_parameter_is_refused_naming_it(api):
    assert fields(await api.client.get("/customers", params={"tag": "v\x00ip", "segment": "smb"})) == {"query.tag"}


async def test_a_nul_in_a_path_parameter_is_refused_naming_it(api):
    assert fields(await api.client.get("/customers/c%001")) == {"path.customer_id"}


async def test_a_nul_anywhere_in_a_json_body_is_refused_naming_each_field(api):
    response = await api.client.post(
        "/customers",
        json={"name": "Acme\x00", "kind": "company", "tags": ["ok", "b\x00d"], "attributes": {"plan": "p\x00"}},
    )
    assert fields(response) == {"name", "tags[1]", "attributes.plan"}
    customer = await api.create()
    patch = await api.client.patch(f"/customers/{customer['id']}", json={"segment": "\x00", "version": 1})
    assert fields(patch) == {"segment"}
    # Nothing was written.
    assert [c["id"] for c in (await api.client.get("/customers")).json()["items"]] == [customer["id"]]


async def test_an_escaped_backslash_before_u0000_is_ordinary_text(api):
    customer = await api.create(name="C:\\u0000 drive")
    assert customer["name"] == "C:\\u0000 drive"
