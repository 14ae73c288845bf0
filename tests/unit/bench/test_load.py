"""The soak's load generator (answers counted, refusals sent again after Retry-After) and bench.memtrace's
comparison of two tracemalloc snapshots."""

from __future__ import annotations

import json
import pickle
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bench.chaos import Run
from bench.infra import Infra
from bench.loadgen import Offered, _post
from bench.memtrace import compare
from bench.soak import minute_series


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[web.Response]]]:
    """A stand-in gateway answering each POST with the next prepared response."""
    answers: list[web.Response] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return answers.pop(0)

    app = web.Application()
    app.router.add_post("/api/v1/interactions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/api/v1/interactions", answers
    await runner.cleanup()


def run_for() -> Run:
    infra = Infra(Path("/nonexistent"), kafka_port=1, pg_port=1, port_offset=0)
    return Run(infra, None, None)  # type: ignore[arg-type]


BODY: dict[str, Any] = {"customer_id": "c1", "type": "complaint", "severity": "high", "external_id": "x-1"}


async def test_a_shed_send_is_sent_again_after_retry_after_and_acknowledged_once(
    upstream: tuple[str, list[web.Response]],
) -> None:
    url, answers = upstream
    answers += [
        web.Response(status=503, headers={"Retry-After": "0"}),
        web.Response(status=429, headers={"Retry-After": "0"}),
        web.json_response({"id": "i-1"}, status=201),
    ]
    run, stats = run_for(), Offered(rate=10.0)
    async with aiohttp.ClientSession() as http:
        await _post(run, http, url, BODY, due=0.0, stats=stats)
    assert stats.answers == {"503": 1, "429": 1, "201": 1}
    assert stats.retries == 2
    assert [(s.interaction_id, s.severity) for s in run.acknowledged] == [("i-1", "high")]
    assert run.sent["warm-up"] == 1
    assert stats.in_flight == 0 and len(stats.latency_ms) == 1


async def test_a_refused_send_is_not_sent_again_nor_acknowledged(upstream: tuple[str, list[web.Response]]) -> None:
    url, answers = upstream
    answers.append(web.json_response({"type": "urn:crm:problem:validation"}, status=422))
    run, stats = run_for(), Offered(rate=10.0)
    async with aiohttp.ClientSession() as http:
        await _post(run, http, url, BODY, due=0.0, stats=stats)
    assert stats.answers == {"422": 1}
    assert stats.retries == 0 and not run.acknowledged


def test_compare_names_the_allocation_site_that_grew_between_two_snapshots(tmp_path: Path) -> None:
    kept: list[bytes] = []
    tracemalloc.start(4)
    try:
        first = tracemalloc.take_snapshot()
        kept.extend(bytes(1000) + bytes([i % 256]) for i in range(2000))  # about 2 MiB held from this line
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    for n, snap in ((1, first), (2, second)):
        (tmp_path / f"snapshot-{n:04d}.pickle").write_bytes(pickle.dumps(snap))
    marks = [
        {"n": 1, "t_s": 0.0, "rss_mib": 1.0, "traced_mib": 0.1},
        {"n": 2, "t_s": 5.0, "rss_mib": 3.0, "traced_mib": 2.1},
    ]
    (tmp_path / "marks.jsonl").write_text("".join(json.dumps(m) + "\n" for m in marks))
    diff = compare(tmp_path, 1, 2, top=3)
    top = diff["grown"][0]
    assert top["at"].startswith("test_load.py:")
    assert top["kib"] > 1900 and top["blocks"] >= 2000
    assert diff["from"]["t_s"] == 0.0 and diff["to"]["t_s"] == 5.0
    assert len(kept) == 2000


def test_minute_series_keeps_the_first_sample_of_each_minute_and_the_last() -> None:
    samples = [{"t_s": t, "rss_mib": {"gateway": 100.0}} for t in (0.0, 10.0, 55.0, 61.0, 130.0, 135.0)]
    assert [s["t_s"] for s in minute_series(samples)] == [0.0, 61.0, 130.0, 135.0]
    assert minute_series([]) == []
