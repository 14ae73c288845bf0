"""Issue 20, finding 13: /metrics needs the metrics token when one is set, and fails closed in production."""

import httpx
import pytest
from fastapi import FastAPI

from servicekit.metrics_route import MetricsSettings, metrics_router


async def _get(app: FastAPI, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        return await client.get("/metrics", headers=headers)


def _app(token: str = "") -> FastAPI:
    app = FastAPI()
    app.include_router(metrics_router(MetricsSettings(metrics_token=token)))
    return app


async def test_metrics_without_or_with_a_wrong_token_are_401_when_a_token_is_set() -> None:
    app = _app("s3cret-metrics-token")
    anonymous = await _get(app)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert (await _get(app, {"Authorization": "Bearer wrong"})).status_code == 401
    scraped = await _get(app, {"Authorization": "Bearer s3cret-metrics-token"})
    assert scraped.status_code == 200
    assert "# HELP" in scraped.text


async def test_metrics_without_a_token_refuse_everyone_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_PRODUCTION", "true")
    assert (await _get(_app())).status_code == 403
    assert (await _get(_app("t0ken"), {"Authorization": "Bearer t0ken"})).status_code == 200


async def test_metrics_stay_open_for_local_runs_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_PRODUCTION", raising=False)
    assert (await _get(_app())).status_code == 200
