"""bench.floor's arithmetic and its bare servers (no broker, no database)."""

import httpx
import pytest

from bench.floor import bare_asgi, bare_fastapi, floor, platform_figures


def phases(kafka: dict[str, dict[str, float | int]]) -> dict[str, dict]:
    measured = {
        "scheduler": {"client": 0.1},
        "asgi": {"server": 0.3, "load generator": 0.6},
        "hop": {"hop": 0.6, "server": 0.3, "load generator": 0.7},
        "gateway": {"gateway": 0.9, "server": 0.3, "load generator": 0.8},
        "fastapi": {"server": 0.5, "load generator": 0.6},
        "database": {"postgres": 0.3, "client": 0.5},
    }
    out: dict[str, dict] = {name: {"cpu_ms_per_op": cpu} for name, cpu in measured.items()}
    for name, figures in kafka.items():
        out[name] = {
            "cpu_ms_per_op": {"kafka": figures["kafka"], "client": figures["client"]},
            "batch": figures["batch"],
        }
    return out


def test_floor_adds_one_of_each_part_and_the_cheapest_kafka_batching() -> None:
    result = floor(
        phases(
            {
                "kafka 10 ms": {"kafka": 0.5, "client": 0.3, "batch": 5},
                "kafka 50 ms": {"kafka": 0.1, "client": 0.15, "batch": 25},
            }
        ),
        rate=500,
        cores=2,
    )
    parts = result["parts_ms"]
    assert parts["HTTP server hop (bare ASGI)"] == 0.3
    assert parts["proxy hop (bare, aiohttp)"] == 0.6
    # The in-process client less the open loop's cost of one scheduled send.
    assert parts["one INSERT in autocommit (PostgreSQL + client)"] == pytest.approx(0.3 + 0.5 - 0.1)
    # 50 ms sends are cheaper: broker 0.1 + client 0.15 less 0.1 / 25 of scheduling per record.
    assert parts["one record produced and consumed once (broker + clients)"] == pytest.approx(0.1 + 0.15 - 0.004)
    assert result["floor_ms"] == pytest.approx(sum(parts.values()), abs=1e-3)


def test_floor_swaps_in_fastapi_and_the_gateway_and_leaves_the_rest_of_the_budget() -> None:
    result = floor(phases({"kafka 10 ms": {"kafka": 0.5, "client": 0.3, "batch": 5}}), rate=500, cores=2)
    assert result["with_fastapi_ms"] == pytest.approx(result["floor_ms"] - 0.3 + 0.5, abs=1e-3)
    assert result["with_fastapi_and_gateway_ms"] == pytest.approx(result["with_fastapi_ms"] - 0.6 + 0.9, abs=1e-3)
    assert result["budget_ms"] == 4.0
    assert result["load_generator_ms"] == pytest.approx(0.65)  # the median over the HTTP phases
    left = 4.0 - 0.65 - result["with_fastapi_and_gateway_ms"]
    assert result["left_for_the_platform_ms"] == pytest.approx(left, abs=1e-3)


async def test_bare_asgi_app_parses_the_body_and_answers_201() -> None:
    transport = httpx.ASGITransport(app=bare_asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://floor") as client:
        answer = await client.post("/interactions", json={"customer_id": "c-1", "type": "purchase"})
    assert answer.status_code == 201
    assert answer.json()["customer_id"] == "c-1"


async def test_bare_fastapi_app_validates_with_the_interaction_model() -> None:
    transport = httpx.ASGITransport(app=bare_fastapi())
    async with httpx.AsyncClient(transport=transport, base_url="http://floor") as client:
        bad = await client.post("/interactions", json={"customer_id": "c-1", "type": "purchase"})
        good = await client.post(
            "/interactions",
            json={"customer_id": "c-1", "type": "purchase", "channel": "web", "amount": 12.5, "currency": "EUR"},
        )
    assert bad.status_code == 422
    assert good.status_code == 201
    assert good.json()["amount"] == "12.5"  # the model's money, a decimal string


def pipeline_report() -> dict:
    cores = {
        "gateway": 0.16,
        "interaction": 0.5,
        "postgres": 0.3,
        "kafka": 0.1,
        "interaction-relay": 0.1,
        "scoring-consumer": 0.2,
        "retention-consumer": 0.3,
        "bench (load generator)": 0.13,
    }
    return {
        "started": "t",
        "args": {"bulk": 1},
        "platform_cpu_ms_per_interaction": {"latency 50/s": 29.0, "throughput 200/s": 10.0, "throughput 300/s": 9.0},
        "throughput": [{"offered": 200.0, "ok": 4000}, {"offered": 300.0, "ok": 6000}],
        "phase_seconds": {"throughput 200/s": 20.0, "throughput 300/s": 30.0},
        "cpu_cores": {"throughput 200/s": cores, "throughput 300/s": {k: 2 * v for k, v in cores.items()}},
    }


def test_platform_parts_sit_beside_their_floor_counterparts_from_the_nearest_step() -> None:
    measured = phases({"kafka 50 ms": {"kafka": 0.1, "client": 0.15, "batch": 25}})
    figures = platform_figures(pipeline_report(), measured, rate=500)
    assert figures["step"] == "throughput 300/s"  # the step nearest 500/s
    assert figures["cpu_ms_per_interaction"] == {"throughput 200/s": 10.0, "throughput 300/s": 9.0}
    rows = figures["beside_the_floor_ms"]
    # 0.32 cores for 30 s over 6,000 interactions: 1.6 ms each; the floor's gateway phase 0.9.
    assert rows["gateway"] == {"platform": 1.6, "floor": 0.9, "ratio": 1.8}
    assert rows["interaction API (FastAPI app + database client)"]["floor"] == pytest.approx(0.5 + 0.5 - 0.1)
    # Relays and consumers (not the load generator): 1.2 cores for 30 s over 6,000.
    assert rows["relays, consumers, other APIs (one record's clients)"]["platform"] == pytest.approx(6.0)


def test_platform_parts_are_left_out_for_a_layout_without_separate_relays() -> None:
    report = pipeline_report()
    for step in report["cpu_cores"].values():
        step.pop("interaction-relay")
    figures = platform_figures(report, phases({}), rate=200)
    assert "beside_the_floor_ms" not in figures
    assert figures["cpu_ms_per_interaction"]["throughput 200/s"] == 10.0
