"""The service command line: a process freezes what start-up built before it serves."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from servicekit import runner
from services.scoring.main import SPEC


def test_a_service_process_freezes_start_ups_objects_before_it_serves(monkeypatch: pytest.MonkeyPatch):
    seen: dict[str, Any] = {}
    monkeypatch.setattr(runner, "configure_logging", lambda *a: None)  # the session's logging stays as it is
    monkeypatch.setattr(runner, "create_app", lambda spec, settings, roles: "app")
    monkeypatch.setattr(runner.uvicorn, "run", lambda app, **kw: seen.update(app=app, frozen=gc.get_freeze_count()))
    try:
        runner.main(SPEC, ["relay", "--no-migrate"])
    finally:
        gc.unfreeze()  # the rest of the test session keeps its collector as it was
    assert seen["app"] == "app"
    assert seen["frozen"] > 0  # everything alive when uvicorn took over is out of the collector's view
