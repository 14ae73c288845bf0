"""Who may set follow-ups and read a customer's pending ones: the follow-up trigger and schedule routes are
an administrator's to change (everyone who reads playbooks may list them), and a customer's pending
follow-ups are scoped like the customer's touches and enrolments (an agent only for their own customers)."""

import httpx
import pytest

from tests.unit.gateway.conftest import StartGateway, bearer
from tests.unit.gateway.fakes import FakeService

AGENT = bearer("agent", sub="alice")
MANAGER = bearer("manager", sub="mia", team=["bob"])
ANALYST = bearer("analyst", sub="ann")
ADMIN = bearer("admin", sub="root")
CHANGES = (
    ("PUT", "/api/v1/followup-triggers/platinum/complaint_resolved", {"action": "call_owner"}),
    ("DELETE", "/api/v1/followup-triggers/platinum/complaint_resolved", None),
    ("PUT", "/api/v1/followup-schedules/gold", {"every_days": 30, "action": "satisfaction_survey"}),
    ("DELETE", "/api/v1/followup-schedules/gold", None),
)


@pytest.fixture
async def gateway(start_gateway: StartGateway, fakes: dict[str, FakeService]) -> httpx.AsyncClient:
    fakes["customer"].objects.update(
        {"/customers/c-alice": {"id": "c-alice", "owner": "alice"}, "/customers/c-bob": {"id": "c-bob", "owner": "bob"}}
    )
    return await start_gateway(as_role=None, owner_cache_s=0)


def _changes_seen(fake: FakeService) -> list[tuple[str, str]]:
    return [(s.method, s.path) for s in fake.seen if s.method in ("PUT", "DELETE")]


@pytest.mark.parametrize("headers", [AGENT, MANAGER, ANALYST], ids=["agent", "manager", "analyst"])
async def test_only_an_admin_changes_follow_up_triggers_and_schedules(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService], headers: dict[str, str]
) -> None:
    for method, path, body in CHANGES:
        response = await gateway.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["type"] == "urn:crm:problem:forbidden"
    assert _changes_seen(fakes["retention"]) == []  # nothing reached the service
    for path in ("/api/v1/followup-triggers", "/api/v1/followup-schedules"):
        assert (await gateway.get(path, headers=headers)).status_code == 200, path


async def test_an_admin_changes_them(gateway: httpx.AsyncClient, fakes: dict[str, FakeService]) -> None:
    for method, path, body in CHANGES:
        assert (await gateway.request(method, path, json=body, headers=ADMIN)).status_code == 200, path
    assert len(_changes_seen(fakes["retention"])) == len(CHANGES)


async def test_a_customers_pending_follow_ups_are_scoped_like_the_customers_touches(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    own = await gateway.get("/api/v1/customers/c-alice/followups", headers=AGENT)
    assert own.status_code == 200 and own.json()["path"] == "/customers/c-alice/followups"
    # another owner's customer is indistinguishable from one that does not exist
    other = await gateway.get("/api/v1/customers/c-bob/followups", headers=AGENT)
    assert other.status_code == 404
    assert [s.path for s in fakes["retention"].seen if s.path.endswith("/followups")] == [
        "/customers/c-alice/followups"
    ]
    assert (await gateway.get("/api/v1/customers/c-bob/followups", headers=MANAGER)).status_code == 200
    assert (await gateway.get("/api/v1/customers/c-alice/followups", headers=MANAGER)).status_code == 404
    assert (await gateway.get("/api/v1/customers/c-bob/followups", headers=ANALYST)).status_code == 200
    assert (await gateway.get("/api/v1/customers/c-bob/followups")).status_code == 401
