"""The cost floor of the platform's shape on this machine: ``python -m bench.floor`` (`make bench-floor`).

What one interaction costs at the very least when it takes the platform's path (load generator ->
gateway -> service -> PostgreSQL -> Kafka -> a consumer) with none of the platform's own work: each
part measured bare, with the libraries and settings the platform uses, at one offered rate (default
500/s, the throughput target), open loop, in one run:

1. ``asgi``: POSTs of a mixed interaction body to a bare ASGI app on uvicorn (uvloop, httptools, no
   access log, as every service runs), which parses the JSON and answers 201: one HTTP server hop;
2. ``fastapi``: the same to a FastAPI app whose only route validates the body as the interaction
   service's ``InteractionCreate`` and returns it: what the framework and the request model add;
3. ``hop``: the same through a bare ASGI proxy (aiohttp client, kept-alive connections, the gateway's
   upstream client) in front of the ``asgi`` app: one proxy hop, its CPU only;
4. ``gateway``: the same through the platform's gateway (JWT check, rate limiter, request ids, the
   pure-ASGI proxy path) in front of the ``asgi`` app: what the gateway costs above the bare hop;
5. ``database``: one single-row ``INSERT .. RETURNING`` in autocommit per operation through asyncpg
   (prepared), on the PostgreSQL that deploy/postgres.sh starts for the platform: server and client CPU;
6. ``kafka``: one record produced and consumed per operation, with the platform's producer (acks=all,
   idempotent) and consumer settings (servicekit.kafka): broker and client CPU.

CPU per operation comes from /proc per process (PostgreSQL: the server with its backends). Client CPU
(phases 5 and 6 run their clients in this process) has the open loop's own cost, measured in an empty
phase, taken off. The floor of one interaction is then one of each: load generator excluded, HTTP
server hop + proxy hop + one statement + one record produced and consumed once. The platform does more
than that for every interaction (its interaction events go to two consumer groups, each consumer and
relay writes PostgreSQL too, scoring and retention publish events of their own), so this is a lower
bound: the budget the platform's own work has left on two cores at the offered rate is
cores / rate - floor. The report compares it with the platform's measured CPU per interaction when a
bench.pipeline JSON is given (--pipeline).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from fastapi import FastAPI, status

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.chaos import interaction_body
from bench.infra import Infra, ensure_topic, pid_file, postgres_pids
from bench.pipeline import Outcome, cpu_snapshot, open_loop, summary_ms
from runner.launcher import Platform, ProcessSpec
from servicekit.kafka import make_consumer, make_producer
from servicekit.settings import REPO_ROOT, KafkaSettings
from services.interaction.interactions.models import InteractionCreate

INFRA = Infra(REPO_ROOT / ".state" / "bench-floor", kafka_port=19492, pg_port=55473, port_offset=23000)
SERVICE_PORT, PROXY_PORT, GATEWAY_PORT = 31001, 31002, 31003  # FastAPI and ASGI apps take SERVICE_PORT in turn
TOPIC = "bench.floor-cpu.v1"
IDLE_S = 5.0  # a server's own background work is measured this long and taken off its per-operation CPU
PHASES = ("asgi", "hop", "gateway", "fastapi", "database", "kafka")
CUSTOMERS = [str(uuid.UUID(int=n)) for n in range(1, 1001)]


def log(message: str) -> None:
    print(f"[floor {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- the bare servers (child processes: python -m bench.floor serve KIND) ------------------------------


async def whole_body(receive: Callable[..., Any]) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def bare_asgi() -> Callable[..., Awaitable[None]]:
    """An ASGI app that reads the body, parses it as JSON and answers 201 with a small JSON body."""

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body = await whole_body(receive)
        data = orjson.loads(body) if body else {}
        answer = orjson.dumps({"id": str(uuid.uuid4()), "customer_id": data.get("customer_id")})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        # POSTs are the measured requests; a GET is a readiness probe (Platform.wait_ready, the gateway's).
        created = scope["method"] == "POST"
        await send({"type": "http.response.start", "status": 201 if created else 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


def bare_fastapi() -> Any:
    """A FastAPI app with one route: the interaction service's request model in and out."""
    app = FastAPI()

    @app.post("/interactions", status_code=status.HTTP_201_CREATED)
    async def create(data: InteractionCreate) -> InteractionCreate:
        return data

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def bare_proxy(upstream: str) -> Callable[..., Awaitable[None]]:
    """An ASGI app that forwards each request's body to upstream and hands the answer back."""
    session: list[aiohttp.ClientSession] = []

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        if not session:  # created in the server's loop
            session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30)))
        body = await whole_body(receive)
        async with session[0].request(
            scope["method"], upstream + scope["path"], data=body, headers={"content-type": "application/json"}
        ) as answer:
            content = await answer.read()
            headers = [
                (b"content-type", answer.headers.get("content-type", "application/json").encode()),
                (b"content-length", str(len(content)).encode()),
            ]
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    return app


def serve(kind: str, port: int, upstream: str) -> None:
    import uvicorn

    app = {"asgi": bare_asgi, "fastapi": bare_fastapi, "proxy": lambda: bare_proxy(upstream)}[kind]()
    # The services' uvicorn settings (servicekit.runner): uvloop and httptools where installed.
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off")


# ---- measuring -----------------------------------------------------------------------------------------


def servers(upstream: str) -> Platform:
    """The bare servers and the platform's gateway, each started when its phase needs it."""
    serve = [sys.executable, "-m", "bench.floor", "serve"]
    gateway_env = {**UNTHROTTLED_ENV, "GATEWAY_PORT": str(GATEWAY_PORT), "GATEWAY_LOG_LEVEL": "WARNING"}
    gateway_env |= {f"GATEWAY_{name}_URL": upstream for name in ("CUSTOMER", "INTERACTION", "SCORING", "RETENTION")}
    specs = [
        ProcessSpec(kind, [*serve, kind, "--port", str(SERVICE_PORT)], SERVICE_PORT, {}) for kind in ("asgi", "fastapi")
    ]
    specs.append(
        ProcessSpec("hop", [*serve, "proxy", "--port", str(PROXY_PORT), "--upstream", upstream], PROXY_PORT, {})
    )
    specs.append(ProcessSpec("gateway", [sys.executable, "-m", "gateway"], GATEWAY_PORT, gateway_env))
    return Platform(
        specs, log_dir=INFRA.state_dir / "logs", base_env={**os.environ, "CRM_STATE_DIR": str(INFRA.state_dir)}
    )


async def started(platform: Platform, name: str) -> int:
    """Start one of the servers and wait until it answers; its pid."""
    platform.start(name)
    await asyncio.to_thread(platform.wait_ready, [name], 60)
    return platform.running[name].popen.pid


async def measured(
    pids: Callable[[], dict[str, list[int]]], body: Awaitable[int]
) -> tuple[dict[str, float], int, float]:
    """Run body (it returns how many operations it completed); CPU seconds per group of processes (looked up
    before and after: database backends come and go), operations, wall seconds."""
    before = cpu_snapshot(pids())
    started_at = time.monotonic()
    done = await body
    wall = time.monotonic() - started_at
    after = cpu_snapshot(pids())
    return {name: after[name] - before[name] for name in before}, done, wall


def per_op_ms(cpu: dict[str, float], ops: int) -> dict[str, float]:
    return {name: round(seconds / ops * 1000, 3) for name, seconds in cpu.items()} if ops else {}


def load_session(headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=3), headers=headers or {})


def mixed_body(n: int) -> tuple[str, dict[str, Any]]:
    return str(n), interaction_body(CUSTOMERS[n % len(CUSTOMERS)], random.Random(n))


async def http_phase(
    url: str, pids: dict[str, int], rate: float, seconds: float, headers: dict[str, str] | None = None
) -> tuple[dict[str, float], int, dict[str, Any]]:
    """Open-loop POSTs to url: CPU of each server (name -> pid) and of the load generator (this process),
    answered, latency."""
    outcomes: list[Outcome] = []
    async with load_session(headers) as http:
        # Warm-up, not measured: connections and first-call costs.
        await open_loop(http, url, 50, 2, mixed_body, start=time.monotonic())

        async def load() -> int:
            outcomes.extend(await open_loop(http, url, rate, seconds, mixed_body, start=time.monotonic()))
            return sum(1 for o in outcomes if 200 <= o.status < 300)

        groups = {name: [pid] for name, pid in pids.items()} | {"load generator": [os.getpid()]}
        cpu, done, _ = await measured(lambda: groups, load())
    ok = [o for o in outcomes if 200 <= o.status < 300]
    return (
        cpu,
        done,
        {"sent": len(outcomes), "ok": len(ok), "latency_ms": summary_ms([o.done - o.scheduled for o in ok])},
    )


async def scheduled(rate: float, seconds: float, operation: Callable[[int], Awaitable[None]]) -> int:
    """Open loop: operation n starts at start + n/rate; waits for all; returns how many completed."""
    start, total, done = time.monotonic(), int(rate * seconds), 0
    in_flight: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        nonlocal done
        await operation(n)
        done += 1

    for n in range(total):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        task = asyncio.create_task(one(n))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(set(in_flight))
    return done


def client_and(name: str, pids: list[int]) -> dict[str, list[int]]:
    """A server's processes and this one, the client (CPU groups for measured)."""
    return {name: pids, "client": [os.getpid()]}


async def nothing(_n: int) -> None:
    return None


async def background_cores(name: str, pids: Callable[[], dict[str, list[int]]]) -> float:
    """Cores a server uses with no traffic (its own housekeeping), which the per-operation figures leave out."""
    idle, _, wall = await measured(pids, asyncio.sleep(IDLE_S, 0))
    return idle[name] / wall


async def database_phase(rate: float, seconds: float) -> tuple[dict[str, float], int, float]:
    """One single-row INSERT .. RETURNING per operation, autocommit, through a pool as the services use."""
    dsn = f"postgresql://postgres@127.0.0.1:{INFRA.pg_port}/{INFRA.database('interaction')}"
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    assert pool is not None
    try:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS floor_rows (id uuid PRIMARY KEY, customer_id text NOT NULL,"
            " type text NOT NULL, occurred_at timestamptz NOT NULL, body jsonb NOT NULL)"
        )
        insert = "INSERT INTO floor_rows VALUES ($1, $2, $3, now(), $4) RETURNING id"
        bodies = [orjson.dumps(interaction_body(CUSTOMERS[n], random.Random(n))).decode() for n in range(1000)]

        async def write(n: int) -> None:
            async with pool.acquire() as connection:
                await connection.fetchval(insert, uuid.uuid4(), CUSTOMERS[n % 1000], "purchase", bodies[n % 1000])

        await scheduled(50, 2, write)  # warm-up: every pooled connection prepared
        assert postgres_pids(INFRA.state_dir), "PostgreSQL is not running"

        def server() -> dict[str, list[int]]:
            # "postgres": cpu_snapshot counts the postmaster's exited backends too.
            return client_and("postgres", postgres_pids(INFRA.state_dir))

        idle_cores = await background_cores("postgres", server)
        cpu, done, wall = await measured(server, scheduled(rate, seconds, write))
        cpu["postgres"] -= idle_cores * wall
        return cpu, done, idle_cores
    finally:
        await pool.close()


async def kafka_phase(rate: float, seconds: float, batch_ms: float) -> tuple[dict[str, float], int, float, int]:
    """One record per operation through the platform's producer, read back with its consumer settings;
    the broker's CPU with no traffic (cores), which its per-record figure leaves out; records per send."""
    kafka = KafkaSettings(bootstrap_servers=INFRA.kafka)
    await ensure_topic(kafka, TOPIC)
    producer = make_producer(kafka, client_id="floor")
    consumer = make_consumer(kafka, TOPIC, group_id=f"floor-{uuid.uuid4().hex[:8]}", client_id="floor", max_records=500)
    await producer.start()
    await consumer.start()
    received = 0
    value = orjson.dumps(interaction_body(CUSTOMERS[0], random.Random(0)))

    async def read() -> None:
        nonlocal received
        async for _record in consumer:
            received += 1

    reader = asyncio.create_task(read())
    try:
        # Until the group owns its partitions and records come back.
        warm = 0
        while received == 0 or received < warm:
            await producer.send_and_wait(TOPIC, value, key=str(warm).encode())
            warm += 1
            await asyncio.sleep(0.1)
            if warm > 600:
                raise TimeoutError("kafka: no round trip")
        first = received

        # As a relay publishes: what has gathered since the last send goes out together.
        batch = max(1, round(rate * batch_ms / 1000))

        async def produce(n: int) -> None:
            sends = [await producer.send(TOPIC, value, key=str((n * batch + i) % 97).encode()) for i in range(batch)]
            await asyncio.gather(*sends)

        async def produce_and_consume() -> int:
            sent = await scheduled(rate / batch, seconds, produce) * batch
            deadline = time.monotonic() + 30
            while received - first < sent and time.monotonic() < deadline:  # noqa: ASYNC110 - a counter, polled
                await asyncio.sleep(0.01)
            return min(sent, received - first)

        broker = pid_file(INFRA.state_dir / "kafka" / "kafka.pid")
        assert broker is not None, "Kafka is not running"
        groups = client_and("kafka", [broker])
        idle_cores = await background_cores("kafka", lambda: groups)
        cpu, done, wall = await measured(lambda: groups, produce_and_consume())
        cpu["kafka"] -= idle_cores * wall
        return cpu, done, idle_cores, batch
    finally:
        reader.cancel()
        for client in (consumer, producer):
            with contextlib.suppress(Exception):
                await client.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rate, seconds = args.rate, args.seconds
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()},
        "rate": rate,
        "seconds": seconds,
        "phases": {},
    }
    phases = report["phases"]

    def note(name: str, cpu: dict[str, float], ops: int, extra: dict[str, Any] | None = None) -> None:
        if ops == 0:
            raise RuntimeError(f"{name}: no operation completed; see the logs in {INFRA.state_dir}")
        phases[name] = {"ops": ops, "cpu_ms_per_op": per_op_ms(cpu, ops), **(extra or {})}
        log(f"{name}: {ops} operations, CPU ms per operation {phases[name]['cpu_ms_per_op']}")

    # The open loop alone: its CPU per operation is taken off the in-process clients below.
    cpu, done, _ = await measured(lambda: {"client": [os.getpid()]}, scheduled(rate, seconds, nothing))
    note("scheduler", cpu, done)

    service_url = f"http://127.0.0.1:{SERVICE_PORT}"
    path = "/interactions"
    chosen = set(args.phases)
    fronts = {
        "hop": (f"http://127.0.0.1:{PROXY_PORT}", None),
        "gateway": (f"http://127.0.0.1:{GATEWAY_PORT}/api/v1", bearer_headers()),
    }
    platform = servers(service_url)
    try:
        if chosen & {"asgi", *fronts}:
            server = await started(platform, "asgi")
            if "asgi" in chosen:
                log(f"asgi: {rate:g}/s for {seconds:g} s")
                note("asgi", *await http_phase(service_url + path, {"server": server}, rate, seconds))
            for name, (url, headers) in fronts.items():
                if name in chosen:
                    log(f"{name}: {rate:g}/s for {seconds:g} s")
                    pids = {name: await started(platform, name), "server": server}
                    note(name, *await http_phase(url + path, pids, rate, seconds, headers))
                    platform.stop(name)
            platform.stop("asgi")
        if "fastapi" in chosen:
            log(f"fastapi: {rate:g}/s for {seconds:g} s")
            server = await started(platform, "fastapi")
            note("fastapi", *await http_phase(service_url + path, {"server": server}, rate, seconds))
    finally:
        platform.stop_all()

    if "database" in chosen:
        log(f"database: {rate:g}/s for {seconds:g} s")
        cpu, done, idle_cores = await database_phase(rate, seconds)
        note("database", cpu, done, {"server_idle_cores": round(idle_cores, 3)})
    if "kafka" in chosen:
        for batch_ms in args.kafka_batch_ms:
            log(f"kafka, sends {batch_ms:g} ms apart: {rate:g}/s for {seconds:g} s")
            cpu, done, idle_cores, batch = await kafka_phase(rate, seconds, batch_ms)
            extra = {"batch": batch, "batch_ms": batch_ms, "server_idle_cores": round(idle_cores, 3)}
            note(f"kafka {batch_ms:g} ms", cpu, done, extra)

    if chosen >= set(PHASES) and args.kafka_batch_ms:
        report["floor"] = floor(phases, rate, os.cpu_count() or 1)
    if args.pipeline:
        report["platform"] = platform_figures(json.loads(args.pipeline.read_text()), phases, rate)
    report["load_after"] = os.getloadavg()
    return report


def client_ms(phases: dict[str, Any], phase: str) -> float:
    """A phase's in-process client CPU per operation, less the open loop's own cost (one scheduled send
    per `batch` operations)."""
    scheduler = phases["scheduler"]["cpu_ms_per_op"]["client"]
    return max(0.0, phases[phase]["cpu_ms_per_op"]["client"] - scheduler / phases[phase].get("batch", 1))


def cheapest_kafka(phases: dict[str, Any]) -> str | None:
    """The Kafka phase (one per send interval) with the least broker + client CPU per record."""
    kafka = [name for name in phases if name.startswith("kafka")]
    return min(kafka, key=lambda name: phases[name]["cpu_ms_per_op"]["kafka"] + client_ms(phases, name), default=None)


def floor(phases: dict[str, Any], rate: float, cores: int) -> dict[str, Any]:
    """One of each bare part per interaction; the budget left for the platform's own work at this rate."""

    def cost(phase: str, name: str) -> float:
        return phases[phase]["cpu_ms_per_op"][name]

    kafka = cheapest_kafka(phases)
    assert kafka is not None
    parts = {
        "HTTP server hop (bare ASGI)": cost("asgi", "server"),
        "proxy hop (bare, aiohttp)": cost("hop", "hop"),
        "one INSERT in autocommit (PostgreSQL + client)": cost("database", "postgres") + client_ms(phases, "database"),
        "one record produced and consumed once (broker + clients)": cost(kafka, "kafka") + client_ms(phases, kafka),
    }
    parts = {k: round(v, 3) for k, v in parts.items()}
    bare = round(sum(parts.values()), 3)
    framework = round(bare - parts["HTTP server hop (bare ASGI)"] + cost("fastapi", "server"), 3)
    gateway = round(framework - parts["proxy hop (bare, aiohttp)"] + cost("gateway", "gateway"), 3)
    load_generator = round(
        statistics.median(cost(p, "load generator") for p in ("asgi", "hop", "gateway", "fastapi")), 3
    )
    budget = round(cores / rate * 1000, 3)
    return {
        "parts_ms": parts,
        "floor_ms": bare,
        "with_fastapi_ms": framework,
        "with_fastapi_and_gateway_ms": gateway,
        "load_generator_ms": load_generator,
        "budget_ms": budget,
        "left_for_the_platform_ms": round(budget - load_generator - gateway, 3),
    }


def platform_figures(pipeline: dict[str, Any], phases: dict[str, Any], rate: float) -> dict[str, Any]:
    """From a bench.pipeline report (split layout): CPU per interaction of the platform's parts in the
    one-request-at-a-time step nearest this run's rate, each beside its counterpart in the floor."""
    steps = pipeline.get("platform_cpu_ms_per_interaction", {})
    figures: dict[str, Any] = {
        "started": pipeline.get("started"),
        "bulk": pipeline.get("args", {}).get("bulk"),
        "cpu_ms_per_interaction": {k: v for k, v in steps.items() if k.startswith("throughput")},
    }
    throughput = [s for s in pipeline.get("throughput", []) if s.get("ok")]
    if not throughput or not {"scheduler", "fastapi", "gateway", "database"} <= phases.keys():
        return figures
    step = min(throughput, key=lambda s: abs(s["offered"] - rate))
    name = f"throughput {step['offered']:g}/s"
    cores, seconds = pipeline["cpu_cores"][name], pipeline["phase_seconds"][name]
    if "interaction-relay" not in cores:
        return figures  # the comparison names the split layout's processes

    def measured_ms(*processes: str) -> float:
        return round(sum(cores.get(p, 0.0) for p in processes) * seconds / step["ok"] * 1000, 3)

    kafka = cheapest_kafka(phases)
    clients = [p for p in cores if p.endswith(("-relay", "-consumer")) or p in ("customer", "scoring", "retention")]
    pairs = {
        "gateway": (measured_ms("gateway"), phases["gateway"]["cpu_ms_per_op"]["gateway"]),
        "interaction API (FastAPI app + database client)": (
            measured_ms("interaction"),
            phases["fastapi"]["cpu_ms_per_op"]["server"] + client_ms(phases, "database"),
        ),
        "PostgreSQL (one INSERT)": (measured_ms("postgres"), phases["database"]["cpu_ms_per_op"]["postgres"]),
    }
    if kafka is not None:
        pairs["Kafka broker (one record)"] = (measured_ms("kafka"), phases[kafka]["cpu_ms_per_op"]["kafka"])
        pairs["relays, consumers, other APIs (one record's clients)"] = (
            measured_ms(*clients),
            client_ms(phases, kafka),
        )
    figures["step"] = name
    figures["beside_the_floor_ms"] = {
        part: {"platform": platform, "floor": round(bare, 3), "ratio": round(platform / bare, 1) if bare else None}
        for part, (platform, bare) in pairs.items()
    }
    return figures


def print_report(report: dict[str, Any]) -> None:
    rate, cores = report["rate"], report["machine"]["cores"]
    print(f"\n## Cost floor at {rate:g} operations/s, {report['seconds']:g} s per phase "
          f"({cores} cores, load {report['machine']['load_before'][0]:.2f})\n")  # fmt: skip
    print("| phase | operations | CPU ms per operation | latency p50 / p99 ms |")
    print("|---|---|---|---|")
    for name, phase in report["phases"].items():
        cpu = ", ".join(f"{k} {v:g}" for k, v in phase["cpu_ms_per_op"].items())
        latency = phase.get("latency_ms")
        shown = f"{latency['p50']:.1f} / {latency['p99']:.1f}" if latency else "-"
        print(f"| {name} | {phase['ops']} | {cpu} | {shown} |")
    f = report.get("floor")
    if f is None:
        return
    print("\n| one interaction, at the least | CPU ms |")
    print("|---|---|")
    for part, ms in f["parts_ms"].items():
        print(f"| {part} | {ms:g} |")
    print(f"| **floor of the parts** | **{f['floor_ms']:g}** |")
    print(f"| with FastAPI and the request model in the service | {f['with_fastapi_ms']:g} |")
    print(f"| with FastAPI and the platform's gateway as the proxy | {f['with_fastapi_and_gateway_ms']:g} |")
    print(f"| the load generator (aiohttp, same machine), per request | {f['load_generator_ms']:g} |")
    print(f"\nAt {rate:g}/s, {cores} cores give {f['budget_ms']:g} ms of CPU per interaction. After the load "
          f"generator and the floor with FastAPI and the gateway, {f['left_for_the_platform_ms']:g} ms are left "
          "for everything the platform itself does.")  # fmt: skip
    if "platform" in report:
        platform = report["platform"]
        print(f"The platform's measured CPU per interaction (bench.pipeline {platform['started']}, bulk "
              f"{platform['bulk']}): {platform['cpu_ms_per_interaction']}")  # fmt: skip
        if "beside_the_floor_ms" in platform:
            print(f"\n| the platform's part ({platform['step']}) | CPU ms per interaction | its floor | ratio |")
            print("|---|---|---|---|")
            for part, row in platform["beside_the_floor_ms"].items():
                print(f"| {part} | {row['platform']:g} | {row['floor']:g} | {row['ratio']} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("serve", help=argparse.SUPPRESS)
    server.add_argument("kind", choices=("asgi", "fastapi", "proxy"))
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--upstream", default="")
    parser.add_argument("--rate", type=float, default=500.0, help="operations per second in every phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--kafka-batch-ms", type=lambda text: [float(x) for x in text.split(",") if x],
                        default=[10.0, 50.0], help="records are produced in batches this far apart, as a relay "
                        "publishes what gathered meanwhile; comma-separated, the floor takes the cheapest")  # fmt: skip
    parser.add_argument("--phases", type=lambda text: [p for p in text.split(",") if p], default=list(PHASES),
                        help=f"comma-separated, of {', '.join(PHASES)} (the floor needs all)")  # fmt: skip
    parser.add_argument("--pipeline", type=Path, help="a bench.pipeline JSON to compare with")
    parser.add_argument("--json", type=Path, default=INFRA.state_dir / "floor.json")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.kind, args.port, args.upstream)
        return
    shutil.rmtree(INFRA.state_dir, ignore_errors=True)
    INFRA.state_dir.mkdir(parents=True, exist_ok=True)
    INFRA.start()
    try:
        report = asyncio.run(run(args))
    finally:
        INFRA.stop()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print_report(report)
    print(f"\n(JSON: {args.json})")


if __name__ == "__main__":
    main()
