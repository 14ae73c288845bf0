import httpx

from tests.unit.gateway.conftest import StartGateway
from tests.unit.gateway.fakes import FakeService, dead_url


async def test_live_answers_without_asking_any_service(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    response = await gateway.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "live"}
    assert all(service.seen == [] for service in fakes.values())


async def test_ready_when_every_service_is_ready(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"customer", "interaction", "scoring", "retention"}
    assert body["checks"]["scoring"] == {"ok": True, "status_code": 200, "checks": {"database": {"ok": True}}}


async def test_not_ready_when_a_service_is_down_and_the_report_names_it(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(retention_url=dead_url())

    response = await gateway.get("/health/ready")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["retention"] == {"ok": False, "error": "unavailable"}
    assert all(checks[name]["ok"] for name in ("customer", "interaction", "scoring"))


async def test_not_ready_when_a_service_reports_itself_not_ready(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    fakes["interaction"].ready = False

    response = await gateway.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["interaction"] == {
        "ok": False,
        "status_code": 503,
        "checks": {"database": {"ok": False}},
    }


async def test_readiness_checks_carry_the_request_id(gateway: httpx.AsyncClient, fakes: dict[str, FakeService]) -> None:
    await gateway.get("/health/ready", headers={"X-Request-ID": "probe-1"})

    assert all(service.seen[-1].headers["x-request-id"] == "probe-1" for service in fakes.values())
