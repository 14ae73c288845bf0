"""The merged OpenAPI document, CORS, and the gateway's own answers in the one error format."""

import httpx

from gateway.openapi import merge
from tests.unit.gateway.conftest import StartGateway
from tests.unit.gateway.fakes import PROBLEM, FakeService

GATEWAY_DOC = {"openapi": "3.1.0", "info": {"title": "gw", "version": "1"}, "paths": {
    "/health/live": {"get": {"responses": {"200": {"description": "ok"}}}},
    "/api/v1/customers/{customer_id}/360": {"get": {"responses": {"200": {"description": "ok"}}}},
}}  # fmt: skip


def _service(paths: dict, schemas: dict) -> dict:
    return {"openapi": "3.1.0", "paths": paths, "components": {"schemas": schemas}}


def _get(ref: str) -> dict:
    return {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": ref}}}}}}}


def test_service_paths_are_published_under_api_v1_where_the_route_table_sends_them() -> None:
    doc = merge(
        GATEWAY_DOC,
        {
            "customer": _service({"/customers/{customer_id}": _get("#/components/schemas/Customer"),
                                  "/health/ready": _get("#/components/schemas/Customer")},
                                 {"Customer": {"type": "object"}}),
            "scoring": _service({"/customers/{customer_id}/scores": _get("#/components/schemas/Scores"),
                                 "/customers/{customer_id}": _get("#/components/schemas/Scores")},
                                {"Scores": {"type": "object"}}),
        },
    )  # fmt: skip

    assert set(doc["paths"]) == {
        "/health/live",
        "/api/v1/customers/{customer_id}",
        "/api/v1/customers/{customer_id}/scores",
        "/api/v1/customers/{customer_id}/360",
    }
    # The scoring service's /customers/{id} is not public: the customer service answers there.
    ref = doc["paths"]["/api/v1/customers/{customer_id}"]["get"]["responses"]["200"]["content"]
    assert ref["application/json"]["schema"]["$ref"] == "#/components/schemas/Customer"


def test_schema_names_two_services_use_differently_are_prefixed_and_references_follow() -> None:
    doc = merge(
        GATEWAY_DOC,
        {
            "customer": _service({"/customers": _get("#/components/schemas/Page")}, {"Page": {"title": "A"}}),
            "retention": _service({"/alerts": _get("#/components/schemas/Page")}, {"Page": {"title": "B"}}),
        },
    )

    schemas = doc["components"]["schemas"]
    assert schemas["Page"] == {"title": "A"}
    assert schemas["RetentionPage"] == {"title": "B"}
    alerts = doc["paths"]["/api/v1/alerts"]["get"]["responses"]["200"]["content"]["application/json"]
    assert alerts["schema"]["$ref"] == "#/components/schemas/RetentionPage"


def test_operations_carry_security_their_permission_and_the_gateways_errors() -> None:
    doc = merge(GATEWAY_DOC, {"retention": _service({"/alerts": _get("#/components/schemas/X")}, {"X": {}}),
                              "scoring": None})  # fmt: skip

    operation = doc["paths"]["/api/v1/alerts"]["get"]
    assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
    assert operation["x-permission"] == "alerts:read"
    assert {"401", "403", "429", "503", "504"} <= set(operation["responses"])
    assert doc["paths"]["/health/live"]["get"]["security"] == []
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert doc["info"]["x-unavailable"] == ["scoring"]


async def test_the_gateway_serves_the_merged_document_and_interactive_docs(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    doc = (await gateway.get("/openapi.json", headers={"Authorization": ""})).json()

    assert "/api/v1/customers" in doc["paths"]  # from the customer fake's own document
    assert "/api/v1/customers/{customer_id}/360" in doc["paths"]
    assert "/api/v1/keys" in doc["paths"]
    assert "Pagination" in doc["info"]["description"] or "limit" in doc["info"]["description"]
    docs = await gateway.get("/docs")
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text


async def test_cors_answers_preflights_and_marks_even_a_401_for_allowed_origins(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role=None, cors_origins=["https://app.example"])

    preflight = await gateway.options(
        "/api/v1/customers",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"},
    )  # fmt: skip
    unauthorized = await gateway.get("/api/v1/customers", headers={"Origin": "https://app.example"})
    foreign = await gateway.get("/api/v1/customers", headers={"Origin": "https://evil.example"})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in foreign.headers


async def test_the_gateways_own_errors_are_problem_documents_with_the_request_id(gateway: httpx.AsyncClient) -> None:
    cases = {
        ("GET", "/api/v1/nothing-here"): 404,
        ("GET", "/not-api"): 404,
        ("POST", "/health/live"): 405,
        ("POST", "/api/v1/customers/c-1/360"): 405,
    }
    for (method, path), status in cases.items():
        response = await gateway.request(method, path, headers={"X-Request-ID": "err-1"})
        assert response.status_code == status, path
        assert response.headers["content-type"] == PROBLEM, path
        assert response.json()["request_id"] == "err-1", path
        assert response.headers["x-request-id"] == "err-1"
