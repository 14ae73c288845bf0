"""POST /customers/resolve: customer ids by external reference, for imports that name customers so."""


async def test_references_resolve_to_ids_and_unknown_or_erased_ones_are_listed(api):
    a = await api.create(external_ref="ERP-1", email="a@example.com")
    b = await api.create(external_ref="ERP-2")
    gone = await api.create(external_ref="ERP-3")
    assert (await api.client.delete(f"/customers/{gone['id']}")).status_code == 202
    asked = ["ERP-2", "nobody", "ERP-1", "ERP-3", "ERP-1"]
    response = await api.client.post("/customers/resolve", json={"external_refs": asked})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["customers"] == [{"external_ref": "ERP-1", "id": a["id"]}, {"external_ref": "ERP-2", "id": b["id"]}]
    assert body["unknown"] == ["ERP-3", "nobody"]
    assert "a@example.com" not in response.text


async def test_an_empty_or_oversized_request_is_a_problem_naming_the_field(api):
    for refs in ([], [f"r{i}" for i in range(5001)]):
        response = await api.client.post("/customers/resolve", json={"external_refs": refs})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "external_refs"
    response = await api.client.post("/customers/resolve", json={"refs": ["r1"]})
    assert response.status_code == 422
    for ref in ("", "r" * 101):  # not a reference any customer can carry
        response = await api.client.post("/customers/resolve", json={"external_refs": ["r1", ref]})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"].startswith("external_refs")
