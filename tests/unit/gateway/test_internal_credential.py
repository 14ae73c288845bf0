"""The signed internal credential: services accept only calls the gateway (or a peer service) signed."""

import time
from typing import Any

import httpx
from fastapi import FastAPI

from servicekit.auth import (
    INTERNAL_HEADER,
    InternalAuthMiddleware,
    InternalAuthSettings,
    ReplayGuard,
    canonical_query,
    internal_headers,
    sign,
    verify,
)
from servicekit.middleware import RequestContextMiddleware
from tests.unit.gateway.fakes import FakeService

SETTINGS = InternalAuthSettings(internal_token="s3cret", internal_auth=True)


def service_app(settings: InternalAuthSettings = SETTINGS) -> FastAPI:
    app = FastAPI()

    @app.get("/customers/{customer_id}")
    async def get_customer(customer_id: str, limit: int = 10) -> dict[str, Any]:
        return {"id": customer_id, "limit": limit}

    @app.post("/customers")
    async def create_customer(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/metrics")
    async def metrics() -> dict[str, str]:
        return {"metrics": "yes"}

    app.add_middleware(InternalAuthMiddleware, settings=settings)
    app.add_middleware(RequestContextMiddleware, service="test")
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


def test_a_signature_verifies_only_for_its_own_method_path_query_body_principal_and_secret() -> None:
    now = int(time.time())
    value = sign("GET", "/customers/c-1", token="s3cret", timestamp=now, principal="role=agent&sub=a")

    assert verify(value, "GET", "/customers/c-1", token="s3cret", max_age_s=30, principal="role=agent&sub=a")
    assert not verify(value, "POST", "/customers/c-1", token="s3cret", max_age_s=30, principal="role=agent&sub=a")
    assert not verify(value, "GET", "/customers/c-2", token="s3cret", max_age_s=30, principal="role=agent&sub=a")
    assert not verify(value, "GET", "/customers/c-1", token="other", max_age_s=30, principal="role=agent&sub=a")
    assert not verify(value, "GET", "/customers/c-1", token="s3cret", max_age_s=30, principal="role=admin&sub=a")
    assert not verify("garbage", "GET", "/customers/c-1", token="s3cret", max_age_s=30)


def test_a_signature_covers_the_query_string_and_the_body() -> None:
    now = int(time.time())
    value = sign("POST", "/customers", token="s3cret", timestamp=now, query="limit=5", body=b'{"a":1}')

    assert verify(value, "POST", "/customers", token="s3cret", max_age_s=30, query="limit=5", body=b'{"a":1}')
    assert not verify(value, "POST", "/customers", token="s3cret", max_age_s=30, query="limit=500", body=b'{"a":1}')
    assert not verify(value, "POST", "/customers", token="s3cret", max_age_s=30, query="", body=b'{"a":1}')
    assert not verify(value, "POST", "/customers", token="s3cret", max_age_s=30, query="limit=5", body=b'{"a":2}')
    assert not verify(value, "POST", "/customers", token="s3cret", max_age_s=30, query="limit=5", body=b"")


def test_spellings_of_a_query_the_service_parses_alike_sign_alike_and_others_do_not() -> None:
    assert canonical_query("q=a%20b&x=%41") == canonical_query("q=a+b&x=A")
    assert canonical_query("a=1&b=2") != canonical_query("b=2&a=1")  # order is meaning for repeated keys
    assert canonical_query("a=1&a=2") != canonical_query("a=1")
    assert canonical_query("owner=x%26role%3Dadmin") != canonical_query("owner=x&role=admin")


def test_a_nonce_is_accepted_once_within_the_window_and_the_guard_is_bounded() -> None:
    guard = ReplayGuard(window_s=30, capacity=3)
    assert guard.first_use("n1", now=1000)
    assert not guard.first_use("n1", now=1010)
    assert guard.first_use("n1", now=1000 + 61)  # long past any timestamp the window would accept
    for nonce in ("a", "b", "c", "d"):
        guard.first_use(nonce, now=2000)
    assert len(guard._seen) == 3


def test_a_signature_expires_and_one_from_the_future_is_refused_too() -> None:
    old = sign("GET", "/x", token="s3cret", timestamp=int(time.time()) - 120)
    future = sign("GET", "/x", token="s3cret", timestamp=int(time.time()) + 120)

    assert not verify(old, "GET", "/x", token="s3cret", max_age_s=30)
    assert not verify(future, "GET", "/x", token="s3cret", max_age_s=30)


def test_the_signed_path_is_compared_decoded_so_percent_encoding_does_not_matter() -> None:
    value = sign("GET", "/customers/a%20b", token="s3cret", timestamp=int(time.time()))

    assert verify(value, "GET", "/customers/a b", token="s3cret", max_age_s=30)


async def test_a_service_refuses_a_call_without_the_internal_credential() -> None:
    async with client(service_app()) as http:
        response = await http.get("/customers/c-1", headers={"X-Request-ID": "r-1"})

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:crm:problem:internal_credential_required"
    assert response.headers["x-request-id"] == "r-1"


async def test_a_service_refuses_a_forged_or_replayed_credential() -> None:
    forged = {INTERNAL_HEADER: sign("GET", "/customers/c-1", token="guess", timestamp=int(time.time()))}
    other_path = internal_headers("GET", "/customers/c-2", settings=SETTINGS)
    async with client(service_app()) as http:
        assert (await http.get("/customers/c-1", headers=forged)).status_code == 401
        assert (await http.get("/customers/c-1", headers=other_path)).status_code == 401


async def test_a_service_accepts_a_signed_call() -> None:
    async with client(service_app()) as http:
        headers = internal_headers(
            "GET", "/customers/c-1", query="limit=3", principal="service:interaction", settings=SETTINGS
        )
        response = await http.get("/customers/c-1?limit=3", headers=headers)

    assert response.status_code == 200
    assert response.json() == {"id": "c-1", "limit": 3}


async def test_a_service_accepts_a_signed_body_and_hands_it_to_the_route_unchanged() -> None:
    body = b'{"name": "Ada"}'
    async with client(service_app()) as http:
        headers = internal_headers("POST", "/customers", body=body, settings=SETTINGS)
        response = await http.post("/customers", content=body, headers={**headers, "content-type": "application/json"})

    assert response.status_code == 200
    assert response.json() == {"name": "Ada"}


async def test_a_service_refuses_a_tampered_query_a_tampered_body_and_a_replay() -> None:
    body = b'{"name": "Ada"}'
    json_type = {"content-type": "application/json"}
    async with client(service_app()) as http:
        signed_query = internal_headers("GET", "/customers/c-1", query="limit=3", settings=SETTINGS)
        assert (await http.get("/customers/c-1?limit=300", headers=signed_query)).status_code == 401

        signed_body = internal_headers("POST", "/customers", body=body, settings=SETTINGS)
        tampered = b'{"name": "Eve"}'
        assert (
            await http.post("/customers", content=tampered, headers={**signed_body, **json_type})
        ).status_code == 401

        once = internal_headers("POST", "/customers", body=body, settings=SETTINGS)
        assert (await http.post("/customers", content=body, headers={**once, **json_type})).status_code == 200
        assert (await http.post("/customers", content=body, headers={**once, **json_type})).status_code == 401


async def test_a_service_refuses_a_signed_body_larger_than_its_limit() -> None:
    small = InternalAuthSettings(internal_token="s3cret", internal_auth=True, internal_auth_max_body_bytes=10)
    body = b'{"name": "a longer name"}'
    async with client(service_app(small)) as http:
        headers = internal_headers("POST", "/customers", body=body, settings=small)
        response = await http.post("/customers", content=body, headers={**headers, "content-type": "application/json"})

    assert response.status_code == 413


async def test_health_and_metrics_need_no_credential() -> None:
    async with client(service_app()) as http:
        assert (await http.get("/health/live")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200


async def test_the_check_can_be_switched_off_for_local_debugging() -> None:
    off = InternalAuthSettings(internal_token="s3cret", internal_auth=False)
    async with client(service_app(off)) as http:
        assert (await http.get("/customers/c-1")).status_code == 200


def test_the_off_switch_reads_on_and_off_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CRM_INTERNAL_AUTH", "off")
    assert InternalAuthSettings().internal_auth is False
    monkeypatch.setenv("CRM_INTERNAL_AUTH", "on")
    assert InternalAuthSettings().internal_auth is True


async def test_every_call_the_gateway_makes_carries_a_valid_signature(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    await gateway.get("/api/v1/customers/c-1/360")
    await gateway.post("/api/v1/interactions", json={"type": "call"})
    await gateway.get("/api/v1/customers?limit=5&q=a%20b")

    default = InternalAuthSettings()
    calls = [seen for service in fakes.values() for seen in service.seen]
    assert len(calls) >= 7
    for seen in calls:
        assert verify(
            seen.headers["x-crm-internal"],
            seen.method,
            seen.path,
            token=default.internal_token,
            max_age_s=30,
            query=seen.query,
            body=seen.body,
            principal=seen.headers.get("x-crm-principal", ""),
        ), seen.path
