import asyncio
import logging
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from gateway.proxy import takes_bulk_budget
from gateway.settings import GatewaySettings
from tests.unit.gateway.conftest import StartGateway
from tests.unit.gateway.fakes import PROBLEM, FakeService, dead_url


async def test_status_body_and_headers_of_the_service_pass_through(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    response = await gateway.post("/api/v1/customers", json={"name": "Ada"})

    assert response.status_code == 201
    assert response.json() == {"id": "abc", "name": "Ada"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-custom"] == "kept"
    # The service's own path is turned into the public one.
    assert response.headers["location"] == "/api/v1/customers/abc"
    assert fakes["customer"].seen[-1].body == b'{"name":"Ada"}'


async def test_service_problem_document_passes_through_unchanged(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/customers/invalid")

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"] == [{"field": "email", "message": "not an email"}]


async def test_each_path_reaches_its_owning_service_at_the_service_path(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    cases = {
        "/api/v1/customers/c-1/scores/history": ("scoring", "/customers/c-1/scores/history"),
        "/api/v1/customers/c-1/interactions": ("interaction", "/customers/c-1/interactions"),
        "/api/v1/complaints": ("interaction", "/complaints"),
        "/api/v1/alerts/a-1": ("retention", "/alerts/a-1"),
        "/api/v1/customers/c-1": ("customer", "/customers/c-1"),
    }
    for public, (service, path) in cases.items():
        response = await gateway.get(public)
        assert response.status_code == 200, public
        assert response.json()["service"] == service
        assert response.headers["x-upstream"] == service
        assert fakes[service].seen[-1].path == path


async def test_method_and_raw_query_string_are_forwarded(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    response = await gateway.patch("/api/v1/customers/c-1?fields=a,b&q=x%20y", json={"segment": "b2b"})

    assert response.status_code == 200
    seen = fakes["customer"].seen[-1]
    assert (seen.method, seen.path, seen.query) == ("PATCH", "/customers/c-1", "fields=a,b&q=x%20y")
    assert seen.body == b'{"segment":"b2b"}'


async def test_request_id_is_propagated_to_the_service_and_echoed(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    response = await gateway.get("/api/v1/scores", headers={"X-Request-ID": "req-42"})

    assert fakes["scoring"].seen[-1].headers["x-request-id"] == "req-42"
    assert response.headers.get_list("x-request-id") == ["req-42"]


async def test_request_id_is_created_when_the_client_sends_none(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    response = await gateway.get("/api/v1/scores")

    created = response.headers["x-request-id"]
    assert created
    assert fakes["scoring"].seen[-1].headers["x-request-id"] == created


async def test_authorization_and_cookies_stay_at_the_edge_while_relevant_headers_go_through(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    # The client's own (valid) Authorization header is sent by the fixture.
    await gateway.post(
        "/api/v1/interactions",
        content=b'{"type":"call"}',
        headers={
            "Cookie": "session=s",
            "X-CRM-Principal": "role=admin&sub=forged",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "If-Match": '"3"',
            "Idempotency-Key": "k-1",
            "X-Internal-Token": "forged",
        },
    )

    headers = fakes["interaction"].seen[-1].headers
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert "x-internal-token" not in headers
    assert headers["x-crm-principal"] == "kind=user&role=admin&sub=tester"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["if-match"] == '"3"'
    assert headers["idempotency-key"] == "k-1"
    assert headers["x-forwarded-for"] == "127.0.0.1"


async def test_unknown_api_path_is_a_404_problem(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 404


async def test_path_escaping_to_another_service_is_refused(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    response = await gateway.get("/api/v1/customers/%2e%2e/alerts")

    # An encoded dot segment has no canonical spelling: refused at the edge (gateway.canonical).
    assert response.status_code == 400
    assert fakes["retention"].seen == []


async def test_trailing_slash_reaches_the_service_path_without_redirect(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    response = await gateway.get("/api/v1/customers/c-1/")

    assert response.status_code == 200
    assert fakes["customer"].seen[-1].path == "/customers/c-1"


async def test_service_that_is_down_gives_a_503_problem_naming_it_without_its_address(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(customer_url=dead_url())

    response = await gateway.post("/api/v1/customers", json={"name": "Ada"})

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["title"] == "Service unavailable"
    assert body["service"] == "customer"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "127.0.0.1" not in response.text
    assert response.headers["retry-after"] == "1"


async def test_slow_service_gives_a_504_problem(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(timeout_s=0.3)

    response = await gateway.get("/api/v1/customers/slow")

    assert response.status_code == 504
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["service"] == "customer"


async def test_bulk_imports_get_the_longer_bulk_budget(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(timeout_s=0.3, bulk_timeout_s=5)

    response = await gateway.post("/api/v1/customers/bulk", json={"rows": []})

    assert response.status_code == 200, response.text
    assert response.json() == {"created": 1}


async def test_a_page_of_alert_evaluation_gets_the_bulk_budget_too(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(timeout_s=0.3, bulk_timeout_s=5)

    response = await gateway.post("/api/v1/alerts/evaluate", params={"limit": 1000})

    assert response.status_code == 200, response.text
    assert response.json() == {"evaluated": 1}


def test_only_many_row_work_gets_the_bulk_budget() -> None:
    assert takes_bulk_budget("/interactions/bulk")
    assert takes_bulk_budget("/customers/status/bulk")
    assert takes_bulk_budget("/alerts/evaluate")
    assert takes_bulk_budget("/customers/resolve")
    assert not takes_bulk_budget("/customers")
    assert not takes_bulk_budget("/customers/c-1")
    assert not takes_bulk_budget("/alerts/evaluate/x")


async def test_body_over_the_limit_is_a_413_problem_and_never_reaches_the_service(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    gateway = await start_gateway(max_body_bytes=10)

    declared = await gateway.post("/api/v1/interactions", content=b"x" * 11)

    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(3):
            yield b"xxxxx"

    streamed = await gateway.post("/api/v1/interactions", content=chunks())
    at_limit = await gateway.post("/api/v1/interactions", content=b"x" * 10)

    assert declared.status_code == 413
    assert declared.headers["content-type"] == PROBLEM
    assert streamed.status_code == 413
    assert at_limit.status_code == 200
    assert [s.body for s in fakes["interaction"].seen] == [b"x" * 10]


async def test_non_get_on_the_gateway_owned_360_view_is_405(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/api/v1/customers/c-1/360")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


class FailFirstConnects:
    """Builds the gateway's real connectors, except that the first ``failures`` connects are refused."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    def __call__(self, settings: GatewaySettings) -> aiohttp.BaseConnector:
        counter = self

        class Refusing(aiohttp.TCPConnector):
            async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109 - aiohttp calls it so
                counter.attempts += 1
                if counter.attempts <= counter.failures:
                    raise aiohttp.ClientConnectorError(req.connection_key, ConnectionRefusedError(111, "refused"))
                return await super().connect(req, traces, timeout)

        return Refusing(limit=settings.max_connections)


async def test_get_is_retried_once_after_a_connect_error(start_gateway: StartGateway) -> None:
    connector = FailFirstConnects(failures=1)
    gateway = await start_gateway(connector=connector)

    response = await gateway.get("/api/v1/scores")

    assert response.status_code == 200
    assert connector.attempts == 2


async def test_get_gives_up_after_one_retry(start_gateway: StartGateway) -> None:
    connector = FailFirstConnects(failures=5)
    gateway = await start_gateway(connector=connector)

    response = await gateway.get("/api/v1/scores")

    assert response.status_code == 503
    assert connector.attempts == 2


async def test_post_is_not_retried(start_gateway: StartGateway, fakes: dict[str, FakeService]) -> None:
    connector = FailFirstConnects(failures=1)
    gateway = await start_gateway(connector=connector)

    response = await gateway.post("/api/v1/interactions", json={"type": "call"})

    assert response.status_code == 503
    assert connector.attempts == 1
    assert fakes["interaction"].seen == []


async def test_gateway_serves_metrics_including_upstream_latency(gateway: httpx.AsyncClient) -> None:
    await gateway.get("/api/v1/scores")

    response = await gateway.get("/metrics")

    assert response.status_code == 200
    assert 'crm_gateway_upstream_duration_seconds_count{method="GET",outcome="2xx",service="scoring"}' in (
        response.text
    )


async def test_outside_the_api_prefix_is_a_404_problem(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/customers")

    assert response.status_code == 404
    assert orjson.loads(response.content)["status"] == 404


async def test_event_stream_is_relayed_with_its_events(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    async with gateway.stream(
        "GET", "/api/v1/alerts/stream", headers={"Accept": "text/event-stream", "Last-Event-ID": "0"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line.startswith("id:")]

    assert lines == ["id: 1", "id: 2"]
    assert fakes["retention"].seen[-1].headers["last-event-id"] == "0"


def _latency_series(metrics_text: str, route: str) -> list[str]:
    return [
        line
        for line in metrics_text.splitlines()
        if line.startswith("crm_http_request_duration_seconds_count{") and 'service="gateway"' in line
        if f'route="{route}"' in line
    ]


async def test_proxied_and_unknown_api_requests_are_labelled_with_the_route_template(
    gateway: httpx.AsyncClient,
) -> None:
    await gateway.get("/api/v1/customers/label-probe")
    await gateway.get("/api/v1/nothing-here-either")

    text = (await gateway.get("/metrics")).text

    series = _latency_series(text, "/api/v1/{path:path}")
    assert any('status="200"' in line for line in series)
    assert any('status="404"' in line for line in series)
    assert _latency_series(text, "/api/v1/customers/label-probe") == []


async def test_gateway_owned_routes_keep_their_own_route_label(gateway: httpx.AsyncClient) -> None:
    await gateway.get("/api/v1/keys")

    text = (await gateway.get("/metrics")).text

    assert any('status="200"' in line for line in _latency_series(text, "/api/v1/keys"))


async def test_unknown_api_path_problem_names_the_path_and_carries_the_request_id(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.get("/api/v1/nothing-here")

    body = response.json()
    assert body["type"] == "urn:crm:problem:not_found"
    assert body["detail"] == "No API resource at /api/v1/nothing-here."
    assert body["request_id"] == response.headers["x-request-id"]


async def test_a_method_the_proxy_does_not_forward_is_a_405_problem_listing_the_allowed_ones(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    # The Allow header comes from the merged OpenAPI, which the gateway reads from each fake service within
    # its readiness timeout; a machine loaded by other work can take longer than the default to answer, and
    # a service missing from the document would leave the path unknown. The wait is not what this tests.
    gateway = await start_gateway(ready_timeout_s=60.0)
    response = await gateway.request("OPTIONS", "/api/v1/customers")

    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    # Exactly the methods the merged document lists for the path (the fake customer service documents POST).
    assert response.headers["allow"] == "POST"
    assert response.json()["type"] == "urn:crm:problem:method_not_allowed"
    # Not forwarded: the service saw only the gateway reading its document.
    assert [(s.method, s.path) for s in fakes["customer"].seen] == [("GET", "/openapi.json")]


async def test_head_answers_with_the_length_a_get_would_have_and_no_body(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    fakes["customer"].objects["/customers/c-1"] = {"id": "c-1", "owner": "tester"}
    got = await gateway.get("/api/v1/customers/c-1")
    head = await gateway.head("/api/v1/customers/c-1")

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert fakes["customer"].seen[-1].method == "HEAD"


async def test_a_cookie_set_by_a_service_is_never_sent_on_later_requests(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    # By host name: a client cookie jar ignores cookies from bare IP addresses.
    gateway = await start_gateway(customer_url=fakes["customer"].url.replace("127.0.0.1", "localhost"))
    first = await gateway.get("/api/v1/customers/with-cookie")
    gateway.cookies.clear()  # the client keeps it; the gateway's own upstream pool must not
    await gateway.get("/api/v1/customers/c-2")

    assert "secret-of-the-first-caller" in first.headers["set-cookie"]
    assert "cookie" not in fakes["customer"].seen[-1].headers


async def test_a_client_that_leaves_before_its_body_arrives_is_dropped_without_an_error(
    gateway: httpx.AsyncClient, fakes: dict[str, FakeService], caplog: pytest.LogCaptureFixture
) -> None:
    url = httpx.URL(str(gateway.base_url))
    seen_before = len(fakes["interaction"].seen)
    _reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        b"POST /api/v1/interactions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        + f"Authorization: {gateway.headers['authorization']}\r\n".encode()
        + b'Content-Length: 1000\r\n\r\n{"customer_id": "c-'
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the gateway is reading the body now
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.2)

    # Nothing was forwarded, nothing logged as an error (a traceback per leaving client cost CPU under
    # overload), and the gateway serves the next request as usual.
    assert len(fakes["interaction"].seen) == seen_before
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert (await gateway.get("/api/v1/scores")).status_code == 200
