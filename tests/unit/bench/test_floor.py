"""bench.floor's arithmetic and its bare servers (no broker, no database)."""

import httpx
import pytest

from bench.floor import bare_asgi, bare_fastapi, floor


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
