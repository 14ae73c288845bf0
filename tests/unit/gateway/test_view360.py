import httpx

from tests.unit.gateway.conftest import StartGateway
from tests.unit.gateway.fakes import PROBLEM, FakeService, dead_url


async def test_360_combines_every_part_from_its_own_service(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    response = await gateway.get("/api/v1/customers/c-1/360", headers={"X-Request-ID": "view-1"})

    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] == "c-1"
    assert body["complete"] is True
    assert body["unavailable"] == {}
    assert body["profile"] == {"service": "customer", "method": "GET", "path": "/customers/c-1", "query": ""}
    assert body["scores"]["path"] == "/customers/c-1/scores"
    assert body["interactions"] == {
        "service": "interaction",
        "method": "GET",
        "path": "/customers/c-1/interactions",
        "query": "limit=20",
    }
    assert body["alerts"]["query"] == "customer_id=c-1&status=open&status=acknowledged&status=snoozed"
    assert body["complaints"]["path"] == "/complaints"
    assert body["complaints"]["query"] == "customer_id=c-1&status=open&status=acknowledged&status=valid"
    assert body["tasks"] == {
        "service": "retention",
        "method": "GET",
        "path": "/tasks",
        "query": "customer_id=c-1&status=open",
    }
    # loyalty points from the customer service, under the permission of GET /customers/{id}/points
    assert body["points"] == {
        "service": "customer",
        "method": "GET",
        "path": "/customers/c-1/points",
        "query": "limit=5",
    }
    assert all(service.seen[-1].headers["x-request-id"] == "view-1" for service in fakes.values())


async def test_360_degrades_when_one_service_is_down(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(scoring_url=dead_url())

    response = await gateway.get("/api/v1/customers/c-1/360")

    assert response.status_code == 200
    body = response.json()
    assert body["complete"] is False
    assert body["scores"] is None
    assert body["unavailable"] == {"scores": {"service": "scoring", "reason": "unavailable"}}
    assert body["profile"]["path"] == "/customers/c-1"
    assert body["alerts"]["service"] == "retention"


async def test_360_marks_a_slow_part_as_timed_out_instead_of_waiting(start_gateway: StartGateway) -> None:
    # The profile call to /customers/slow hangs; it must not hold up the view past its budget.
    gateway = await start_gateway(view360_timeout_s=0.3)

    response = await gateway.get("/api/v1/customers/slow/360")

    assert response.status_code == 200
    body = response.json()
    assert body["profile"] is None
    assert body["unavailable"]["profile"] == {"service": "customer", "reason": "timeout"}
    assert body["scores"]["path"] == "/customers/slow/scores"


async def test_360_of_an_unknown_customer_is_the_customer_service_404(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/customers/missing/360")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["title"] == "Customer not found"


async def test_360_percent_encodes_the_customer_id_for_the_services(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    response = await gateway.get("/api/v1/customers/a%20b/360")

    assert response.status_code == 200
    assert response.json()["customer_id"] == "a b"
    assert sorted(seen.path for seen in fakes["customer"].seen) == ["/customers/a b", "/customers/a b/points"]
    alert_queries = [seen.query for seen in fakes["retention"].seen if seen.path == "/alerts"]
    assert alert_queries == ["customer_id=a+b&status=open&status=acknowledged&status=snoozed"]


async def test_360_is_a_503_problem_when_no_service_answers(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(
        customer_url=dead_url(), interaction_url=dead_url(), scoring_url=dead_url(), retention_url=dead_url()
    )

    response = await gateway.get("/api/v1/customers/c-1/360")

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert set(response.json()["unavailable"]) == {
        "profile",
        "scores",
        "interactions",
        "complaints",
        "alerts",
        "tasks",
        "points",
    }


async def test_360_omits_and_names_the_parts_the_caller_may_not_read_without_fetching_them(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    # An integration may read customers and alerts, nothing else of the view.
    gateway = await start_gateway(as_role="integration")

    response = await gateway.get("/api/v1/customers/c-1/360")

    assert response.status_code == 200
    body = response.json()
    assert body["profile"]["path"] == "/customers/c-1"
    assert body["alerts"]["path"] == "/alerts"
    assert body["omitted"] == {
        "scores": {"reason": "not_permitted", "permission": "scores:read"},
        "interactions": {"reason": "not_permitted", "permission": "interactions:read"},
        "complaints": {"reason": "not_permitted", "permission": "complaints:read"},
        "tasks": {"reason": "not_permitted", "permission": "tasks:read"},
    }
    assert (body["scores"], body["interactions"], body["complaints"], body["tasks"]) == (None, None, None, None)
    assert body["complete"] is False
    assert body["unavailable"] == {}
    # Never fetched: the services saw no request for them.
    assert not fakes["scoring"].seen
    assert not fakes["interaction"].seen
    assert [s.path for s in fakes["retention"].seen] == ["/alerts"]


async def test_360_keeps_omitted_apart_from_unavailable_when_a_permitted_service_is_down(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(as_role="integration", retention_url=dead_url())

    body = (await gateway.get("/api/v1/customers/c-1/360")).json()

    assert body["unavailable"] == {"alerts": {"service": "retention", "reason": "unavailable"}}
    assert set(body["omitted"]) == {"scores", "interactions", "complaints", "tasks"}
    assert body["profile"]["path"] == "/customers/c-1"


async def test_every_360_part_needs_the_permission_of_its_own_route() -> None:
    from gateway.routes import API_PREFIX, permission_for
    from gateway.view360 import part_permission, parts

    for part, path, _ in parts("c-1", 20):
        rule = permission_for("GET", API_PREFIX + path)
        assert rule is not None and part_permission(path) == rule.permission, part.name
