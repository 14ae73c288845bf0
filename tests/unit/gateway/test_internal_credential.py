"""The signed internal credential: services accept only calls the gateway (or a peer service) signed."""

import time

import httpx
from fastapi import FastAPI

from servicekit.auth import (
    INTERNAL_HEADER,
    InternalAuthMiddleware,
    InternalAuthSettings,
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
    async def get_customer(customer_id: str) -> dict[str, str]:
        return {"id": customer_id}

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


def test_a_signature_verifies_only_for_its_own_method_path_principal_and_secret() -> None:
    now = int(time.time())
    value = sign("GET", "/customers/c-1", token="s3cret", timestamp=now, principal="role=agent&sub=a")

    assert verify(value, "GET", "/customers/c-1", token="s3cret", max_age_s=30, principal="role=agent&sub=a")
    assert not verify(value, "POST", "/customers/c-1", token="s3cret", max_age_s=30, principal="role=agent&sub=a")
    assert not verify(value, "GET", "/customers/c-2", token="s3cret", max_age_s=30, principal="role=agent&sub=a")
    assert not verify(value, "GET", "/customers/c-1", token="other", max_age_s=30, principal="role=agent&sub=a")
    assert not verify(value, "GET", "/customers/c-1", token="s3cret", max_age_s=30, principal="role=admin&sub=a")
    assert not verify("garbage", "GET", "/customers/c-1", token="s3cret", max_age_s=30)


def test_a_signature_expires() -> None:
    old = int(time.time()) - 120
    value = sign("GET", "/x", token="s3cret", timestamp=old)

    assert not verify(value, "GET", "/x", token="s3cret", max_age_s=30)


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
        headers = internal_headers("GET", "/customers/c-1", principal="service:interaction", settings=SETTINGS)
        response = await http.get("/customers/c-1", headers=headers)

    assert response.status_code == 200
    assert response.json() == {"id": "c-1"}


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
            principal=seen.headers.get("x-crm-principal", ""),
        ), seen.path
