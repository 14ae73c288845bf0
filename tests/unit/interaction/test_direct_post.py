"""POST /interactions called directly (servicekit.direct) answers exactly as the framework's own path does."""

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

import servicekit.direct as direct_module
import servicekit.service as service_module
from servicekit.direct import DirectRoutes
from servicekit.service import API, create_app
from services.interaction.interactions.models import InteractionCreate
from services.interaction.main import SPEC
from services.interaction.models import metadata
from services.interaction.replica.directory import CustomerDirectory
from services.interaction.settings import InteractionSettings
from tests.unit.interaction.conftest import CustomerService

PURCHASE = {
    "customer_id": "c-1", "type": "purchase", "amount": "42.50", "currency": "EUR", "channel": "web",
    "occurred_at": "2026-11-02T09:00:00Z",
}  # fmt: skip
COMPLAINT = {"customer_id": "c-1", "type": "complaint", "severity": "high", "occurred_at": "2026-11-01T10:00:00Z"}
# Ids and times differ between two apps' answers; everything else must not.
VARYING = re.compile(
    rb'"(id|recorded_at|complaint_updated_at|due_at|interaction_id|request_id)":"[^"]*"'
    rb"|/interactions/[0-9a-f-]+|interaction \([0-9a-f-]+\)"
)


class Client:
    def __init__(self, http: httpx.AsyncClient, app: Any) -> None:
        self.http, self.app, self.routed = http, app, 0

    def count_routed(self) -> None:
        """Count what reaches the framework's router (the stack is built by the first request)."""
        layer = self.app.middleware_stack
        while not isinstance(layer, DirectRoutes):
            layer = layer.app
        router = layer.router

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            self.routed += 1
            await router(scope, receive, send)

        layer.router = counting


async def client(tmp_path: Path, name: str, *, direct: bool) -> AsyncIterator[Client]:
    settings = InteractionSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / name}.db")
    if direct:
        app = create_app(SPEC, settings, roles=(API,))
    else:
        saved = service_module.install_direct_routes
        service_module.install_direct_routes = lambda _app: None  # type: ignore[assignment]
        try:
            app = create_app(SPEC, settings, roles=(API,))
        finally:
            service_module.install_direct_routes = saved  # type: ignore[assignment]
    async with app.state.database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    app.state.customer_directory = CustomerDirectory(
        "http://customer", timeout_s=1, transport=httpx.MockTransport(CustomerService()), batch_wait_s=0.05
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://interaction") as http,
    ):
        yield Client(http, app)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    direct, framework = client(tmp_path, "direct", direct=True), client(tmp_path, "framework", direct=False)
    yield await anext(direct), await anext(framework)
    for generator in (direct, framework):
        with pytest.raises(StopAsyncIteration):
            await anext(generator)


def answer(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(k, VARYING.sub(b"", v.encode()).decode()) for k, v in response.headers.items() if k != "x-request-id"]
    return response.status_code, VARYING.sub(b"", response.content), sorted(headers)


REQUESTS: dict[str, dict[str, Any]] = {
    "plain purchase": {"json": PURCHASE},
    "plain complaint": {"json": COMPLAINT},
    "a repeat by external_id": {"json": {**PURCHASE, "external_id": "x-1"}, "twice": True},
    "an external_id reused for another type": {"json": {**COMPLAINT, "external_id": "x-2"}, "before": PURCHASE},
    "a missing field": {"json": {"customer_id": "c-1", "type": "complaint"}},
    "a wrong type": {"json": {**PURCHASE, "amount": "lots"}},
    "malformed JSON": {"content": b'{"customer_id": ', "headers": {"content-type": "application/json"}},
    "an empty body": {"content": b"", "headers": {"content-type": "application/json"}},
    "a NUL in a field": {"json": {**PURCHASE, "channel": "w\x00b"}},
    "text/plain": {"content": b'{"customer_id": "c-1"}', "headers": {"content-type": "text/plain"}},
    "no content type": {"content": b'{"customer_id": "c-1", "type": "purchase"}', "headers": {}},
    "a query string": {"json": PURCHASE, "params": {"x": "1"}},
    "an unknown customer": {"json": {**PURCHASE, "customer_id": "nobody"}},
    "a JSON array": {"json": [PURCHASE]},
}


@pytest.mark.parametrize("case", REQUESTS)
async def test_every_answer_is_the_frameworks_own(pair: tuple[Client, Client], case: str) -> None:
    spec = REQUESTS[case]
    answers = []
    for side in pair:
        if "before" in spec:
            await side.http.post("/interactions", json={**spec["before"], "external_id": "x-2"})
        kwargs = {k: v for k, v in spec.items() if k in ("json", "content", "headers", "params")}
        response = await side.http.post("/interactions", **kwargs)
        if spec.get("twice"):
            response = await side.http.post("/interactions", **kwargs)
        answers.append(answer(response))
    assert answers[0] == answers[1]


async def test_the_plain_case_skips_the_router_and_a_refusal_goes_through_it(pair: tuple[Client, Client]) -> None:
    direct, _ = pair
    await direct.http.post("/interactions", json=PURCHASE)
    direct.count_routed()
    assert (await direct.http.post("/interactions", json=PURCHASE)).status_code == 201
    assert direct.routed == 0
    assert (await direct.http.post("/interactions", json={**PURCHASE, "amount": "lots"})).status_code == 422
    assert (await direct.http.get("/interactions/nothing")).status_code == 404
    assert direct.routed == 2


async def test_the_request_metric_names_the_route(pair: tuple[Client, Client]) -> None:
    direct, _ = pair
    await direct.http.post("/interactions", json=PURCHASE)
    metrics = (await direct.http.get("/metrics")).text
    assert 'method="POST",route="/interactions",service="interaction",status="201"' in metrics


MODELS_HANDED_OVER = [
    PURCHASE,
    COMPLAINT,
    {**COMPLAINT, "category": " Billing ", "channel": "PHONE", "external_id": "x-9"},
    {"customer_id": "c-1", "type": "survey", "survey": "nps", "score": 9, "occurred_at": "2026-11-01T10:00:00+02:00"},
    {**PURCHASE, "amount": 19.5, "quantity": 2, "sentiment": 0, "text": "ok"},
]


@pytest.mark.parametrize("body", MODELS_HANDED_OVER)
async def test_the_endpoint_gets_the_model_the_framework_would_hand_it(
    body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[InteractionCreate] = []
    plain_cases: list[Any] = []
    validate = direct_module._plain_case

    def counted(model: Any, raw: bytes) -> Any:
        plain_cases.append(validate(model, raw))
        return plain_cases[-1]

    monkeypatch.setattr(direct_module, "_plain_case", counted)

    @direct_module.direct
    async def endpoint(data: InteractionCreate, request: Request) -> Response:
        handed.append(data)
        return Response(status_code=201)

    for install in (True, False):
        app = FastAPI()
        app.post("/interactions")(endpoint)
        if install:
            direct_module.install_direct_routes(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as http:
            assert (await http.post("/interactions", json=body)).status_code == 201
    assert len(plain_cases) == 1 and plain_cases[0] is handed[0]  # the first app's, directly
    directly, routed = handed
    assert type(directly) is type(routed) and directly == routed
    assert directly.__dict__ == routed.__dict__
    assert directly.model_fields_set == routed.model_fields_set
    assert (directly.__pydantic_extra__, directly.__pydantic_private__) == (
        routed.__pydantic_extra__,
        routed.__pydantic_private__,
    )
