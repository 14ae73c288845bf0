"""Object-level authorization: agents reach only their own customers, managers their team's (OWASP API1)."""

import httpx
import pytest

from tests.unit.gateway.conftest import StartGateway, bearer
from tests.unit.gateway.fakes import FakeService

ALICE = bearer("agent", sub="alice")
MANAGER = bearer("manager", sub="mia", team=["bob"])


@pytest.fixture
async def gateway(start_gateway: StartGateway, fakes: dict[str, FakeService]) -> httpx.AsyncClient:
    fakes["customer"].objects.update(
        {
            "/customers/c-alice": {"id": "c-alice", "owner": "alice"},
            "/customers/c-bob": {"id": "c-bob", "owner": "bob"},
            "/customers/c-nobody": {"id": "c-nobody", "owner": None},
        }
    )
    fakes["retention"].objects.update(
        {
            "/alerts/a-bob": {"id": "a-bob", "customer_id": "c-bob", "owner": "bob"},
            "/alerts/a-alice": {"id": "a-alice", "customer_id": "c-alice", "owner": "alice"},
            "/tasks/t-reassigned": {"id": "t-reassigned", "customer_id": "c-bob", "owner": "alice"},
        }
    )
    return await start_gateway(as_role=None, owner_cache_s=0)


def _forwarded(fake: FakeService, path: str) -> list[str]:
    return [seen.query for seen in fake.seen if seen.path == path]


async def test_an_agent_reads_their_own_customer_but_not_someone_elses(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/api/v1/customers/c-alice", headers=ALICE)).status_code == 200
    for path in ("/api/v1/customers/c-bob", "/api/v1/customers/c-bob/scores", "/api/v1/customers/c-bob/360",
                 "/api/v1/customers/c-bob/interactions", "/api/v1/customers/c-nobody"):  # fmt: skip
        response = await gateway.get(path, headers=ALICE)
        # Indistinguishable from a customer that does not exist.
        assert response.status_code == 404, path
        assert response.json()["type"] == "urn:crm:problem:not_found"


async def test_an_agent_cannot_change_someone_elses_customer(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    assert (await gateway.patch("/api/v1/customers/c-bob", json={"segment": "x"}, headers=ALICE)).status_code == 404
    assert not [s for s in fakes["customer"].seen if s.method == "PATCH"]
    assert (await gateway.patch("/api/v1/customers/c-alice", json={"segment": "x"}, headers=ALICE)).status_code == 200


async def test_the_360_view_of_an_unknown_customer_is_404_for_an_agent(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/api/v1/customers/missing/360", headers=ALICE)).status_code == 404


async def test_an_agents_lists_are_forced_to_their_own_records(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    await gateway.get("/api/v1/customers?segment=smb", headers=ALICE)
    await gateway.get("/api/v1/alerts?status=open&owner=alice", headers=ALICE)
    await gateway.get("/api/v1/tasks", headers=ALICE)

    assert _forwarded(fakes["customer"], "/customers") == ["segment=smb&owner=alice"]
    assert _forwarded(fakes["retention"], "/alerts") == ["status=open&owner=alice"]
    assert _forwarded(fakes["retention"], "/tasks") == ["owner=alice"]


async def test_an_agent_asking_for_someone_elses_list_is_403(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/alerts?owner=bob", headers=ALICE)

    assert response.status_code == 403
    assert response.json()["errors"][0]["field"] == "query.owner"


async def test_list_items_of_other_owners_are_dropped_if_a_service_ignores_the_filter(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    fakes["customer"].objects["/customers"] = {
        "items": [{"id": "c-alice", "owner": "alice"}, {"id": "c-bob", "owner": "bob"}],
        "total": 2,
        "limit": 50,
        "offset": 0,
    }

    body = (await gateway.get("/api/v1/customers", headers=ALICE)).json()

    assert body["items"] == [{"id": "c-alice", "owner": "alice"}]
    assert body["total"] == 1


async def test_a_manager_sees_the_teams_customers_and_lists(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    assert (await gateway.get("/api/v1/customers/c-bob", headers=MANAGER)).status_code == 200
    assert (await gateway.get("/api/v1/customers/c-alice", headers=MANAGER)).status_code == 404
    await gateway.get("/api/v1/alerts", headers=MANAGER)
    assert _forwarded(fakes["retention"], "/alerts") == ["owner=bob&owner=mia"]
    assert (await gateway.get("/api/v1/alerts?owner=bob", headers=MANAGER)).status_code == 200
    assert (await gateway.get("/api/v1/alerts?owner=alice", headers=MANAGER)).status_code == 403


async def test_a_managers_customer_and_task_lists_ask_for_every_team_member(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    await gateway.get("/api/v1/customers", headers=MANAGER)
    await gateway.get("/api/v1/tasks?status=open", headers=MANAGER)
    await gateway.get("/api/v1/tasks?owner=bob", headers=MANAGER)

    assert _forwarded(fakes["customer"], "/customers") == ["owner=bob&owner=mia"]
    assert _forwarded(fakes["retention"], "/tasks") == ["status=open&owner=bob&owner=mia", "owner=bob"]


async def test_an_invalid_customer_id_is_the_services_422_not_an_outage(gateway: httpx.AsyncClient) -> None:
    # The owner lookup meets the service's validation problem: handed on, as the proxy would.
    response = await gateway.get("/api/v1/customers/invalid", headers=ALICE)

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "email", "message": "not an email"}]


async def test_an_agent_reaches_an_alert_or_task_only_through_their_customers(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/api/v1/alerts/a-alice", headers=ALICE)).status_code == 200
    assert (await gateway.get("/api/v1/alerts/a-bob", headers=ALICE)).status_code == 404
    assert (await gateway.post("/api/v1/alerts/a-bob/acknowledge", json={}, headers=ALICE)).status_code == 404


async def test_a_task_still_carrying_a_previous_owner_is_closed_to_them_once_the_customer_moved(
    gateway: httpx.AsyncClient,
) -> None:
    # t-reassigned still says owner alice (a copy that lags the reassignment); its customer is bob's now.
    assert (await gateway.get("/api/v1/tasks/t-reassigned", headers=ALICE)).status_code == 404
    assert (await gateway.post("/api/v1/tasks/t-reassigned/complete", json={}, headers=ALICE)).status_code == 404
    assert (await gateway.get("/api/v1/tasks/t-reassigned", headers=bearer("agent", sub="bob"))).status_code == 200


async def test_an_agent_records_interactions_only_for_their_customers(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    mine = await gateway.post("/api/v1/interactions", json={"customer_id": "c-alice", "type": "call"}, headers=ALICE)
    theirs = await gateway.post("/api/v1/interactions", json={"customer_id": "c-bob", "type": "call"}, headers=ALICE)

    assert mine.status_code == 200
    assert theirs.status_code == 404
    assert [s.body for s in fakes["interaction"].seen if s.method == "POST"] == [
        b'{"customer_id":"c-alice","type":"call"}'
    ]


async def test_an_agent_lists_complaints_of_one_customer_of_theirs_or_of_all_they_own(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    assert (await gateway.get("/api/v1/complaints?customer_id=c-bob", headers=ALICE)).status_code == 404
    assert (await gateway.get("/api/v1/complaints?customer_id=c-alice", headers=ALICE)).status_code == 200
    # Without a customer: narrowed to the customers they own, and asking for another owner's is refused.
    assert (await gateway.get("/api/v1/complaints?status=open", headers=ALICE)).status_code == 200
    assert (await gateway.get("/api/v1/complaints?owner=bob", headers=ALICE)).status_code == 403
    assert _forwarded(fakes["interaction"], "/complaints") == ["customer_id=c-alice", "status=open&owner=alice"]


async def test_an_agent_creates_customers_only_for_themselves(gateway: httpx.AsyncClient) -> None:
    assert (
        await gateway.post("/api/v1/customers", json={"name": "A", "owner": "alice"}, headers=ALICE)
    ).status_code == 201
    assert (
        await gateway.post("/api/v1/customers", json={"name": "B", "owner": "bob"}, headers=ALICE)
    ).status_code == 403
    assert (await gateway.post("/api/v1/customers", json={"name": "C"}, headers=ALICE)).status_code == 403


async def test_unscoped_roles_are_not_narrowed(gateway: httpx.AsyncClient, fakes: dict[str, FakeService]) -> None:
    assert (await gateway.get("/api/v1/customers/c-bob", headers=bearer("analyst"))).status_code == 200
    await gateway.get("/api/v1/alerts?status=open", headers=bearer("integration"))
    assert _forwarded(fakes["retention"], "/alerts") == ["status=open"]


async def test_the_owner_is_asked_every_time_by_default_so_a_reassignment_applies_at_once(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    fakes["customer"].objects["/customers/c-alice"] = {"id": "c-alice", "owner": "alice"}
    gateway = await start_gateway(as_role=None)
    assert (await gateway.get("/api/v1/customers/c-alice/scores", headers=ALICE)).status_code == 200

    fakes["customer"].objects["/customers/c-alice"] = {"id": "c-alice", "owner": "bob"}

    assert (await gateway.get("/api/v1/customers/c-alice/scores", headers=ALICE)).status_code == 404


async def test_the_owner_check_is_cached_when_configured(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    fakes["customer"].objects["/customers/c-alice"] = {"id": "c-alice", "owner": "alice"}
    gateway = await start_gateway(as_role=None, owner_cache_s=60)

    for _ in range(3):
        assert (await gateway.get("/api/v1/customers/c-alice/scores", headers=ALICE)).status_code == 200

    assert len([s for s in fakes["customer"].seen if s.path == "/customers/c-alice"]) == 1
