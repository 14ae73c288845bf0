"""A job-creating call answers 202 at once whatever job runs: a job's heavy work runs in a thread, so the
service's event loop, which its API shares, keeps answering while it runs (a fit on the loop once made the
gateway time out with 504)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from servicekit.db import Database
from servicekit.service import API, create_app
from services.scoring import background
from services.scoring.main import SPEC, metadata
from services.scoring.settings import ScoringSettings
from services.scoring.training import jobs


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = ScoringSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}")
    app = create_app(SPEC, settings, roles=(API,))
    database: Database = app.state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield app
    await database.dispose()


async def test_the_api_answers_a_new_job_while_a_running_job_works_in_its_thread(app: FastAPI, monkeypatch) -> None:
    database: Database = app.state.database
    working, release = threading.Event(), threading.Event()

    def slow_purchase_days(rows: list[Any]) -> dict[str, Any]:
        working.set()
        release.wait(timeout=30)  # held until the API has answered below
        return {}

    monkeypatch.setattr(jobs, "purchase_days", slow_purchase_days)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scoring") as client:
        refit = (await client.post("/models/value/refit", json={})).json()
        claimed = await background.claim_next(database)
        assert claimed is not None and claimed.id == refit["id"]
        running = asyncio.create_task(background.run_job(database, app.state.settings, claimed))
        try:
            assert await asyncio.to_thread(working.wait, 30)
            train = await client.post("/models/churn/train", json={})
            assert train.status_code == 202, train.text
            assert (await client.get(f"/jobs/{refit['id']}")).json()["status"] == "running"
        finally:
            release.set()
            await running
    async with database.sessions() as session:
        finished = await session.get(type(claimed), claimed.id)
    assert finished is not None and finished.status == "failed"  # no purchases: it ends, with its reason
