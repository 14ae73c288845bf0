"""Who may change which churn model is in use: activating a version and going back to none (rules-based risk)
are an analyst's or administrator's (models:write); an agent or manager is refused before the scoring
service is reached."""

import httpx
import pytest

from tests.unit.gateway.conftest import StartGateway, bearer
from tests.unit.gateway.fakes import FakeService

CHANGES = ("/api/v1/models/churn-1/activate", "/api/v1/models/churn/deactivate")


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> httpx.AsyncClient:
    return await start_gateway(as_role=None)


def _posts_seen(fake: FakeService) -> list[str]:
    return [s.path for s in fake.seen if s.method == "POST"]


@pytest.mark.parametrize("role", ["agent", "manager"])
async def test_an_agent_or_manager_may_not_activate_or_deactivate_a_churn_model(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService], role: str
) -> None:
    for path in CHANGES:
        response = await gateway.post(path, headers=bearer(role, sub=f"{role}-1"))
        assert response.status_code == 403, (path, response.text)
        assert response.json()["type"] == "urn:crm:problem:forbidden"
    assert _posts_seen(fakes["scoring"]) == []  # nothing reached the service


@pytest.mark.parametrize("role", ["analyst", "admin"])
async def test_an_analyst_or_admin_may(gateway: httpx.AsyncClient, fakes: dict[str, FakeService], role: str) -> None:
    for path in CHANGES:
        assert (await gateway.post(path, headers=bearer(role, sub=f"{role}-1"))).status_code == 200, path
    assert _posts_seen(fakes["scoring"]) == ["/models/churn-1/activate", "/models/churn/deactivate"]
