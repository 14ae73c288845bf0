"""Fault injection against real Kafka and PostgreSQL: ``python -m bench.chaos`` (`make chaos`).

A steady stream of interactions (purchases, complaints, surveys) flows through the gateway while the
scenarios below run one after another. Each interaction is tagged with the scenario that was running
when it was sent. When the stream has ended and the pipeline is idle, every acknowledged interaction
is looked up in each service's own database:

* interaction: the interaction row exists (effects / acknowledged must be 1.000);
* scoring: exactly one score-history row caused by its event (more would be a duplicated effect);
* retention: every severe complaint counted exactly once in its customer's alert (trigger_count).

Duplicate deliveries are counted from the consumers' own `crm_events_duplicate_total` counters
(scraped before every kill and at the end), so a run proves the de-duplication path really ran.
The dead-letter topics must hold exactly the poison messages, once per consuming group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import itertools
import os
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.infra import Infra, another_instance, start_in_order
from contracts import topics
from runner.launcher import SERVICES, Platform
from servicekit.kafka import topic_partitions
from servicekit.settings import REPO_ROOT

CONSUMERS = [f"{name}-consumer" for name in SERVICES]
POISON_PREFIX = b"chaos-poison-"
# Added to every port of the platform under test; the highest port it opens is the second scoring
# consumer's (see scale_consumers), which must stay below Linux's ephemeral range (32768+).
HIGHEST_BASE_PORT = SERVICES["scoring"] + 250


def port_offset() -> int:
    """CRM_CHAOS_PORT_OFFSET (default 20000): where the chaos platform's processes listen."""
    offset = int(os.environ.get("CRM_CHAOS_PORT_OFFSET", "20000"))
    if offset < 0 or HIGHEST_BASE_PORT + offset >= 32768:
        raise ValueError(f"CRM_CHAOS_PORT_OFFSET={offset}: ports would reach {HIGHEST_BASE_PORT + offset} (>= 32768)")
    return offset


@dataclass
class Sent:
    interaction_id: str
    customer_id: str
    type: str
    severity: str | None
    scenario: str
    sent_at: float = 0.0  # wall-clock time of the first attempt (time.time())


@dataclass
class Run:
    infra: Infra
    platform: Platform
    gateway: httpx.AsyncClient
    customers: list[str] = field(default_factory=list)
    acknowledged: list[Sent] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    scenario: str = "warm-up"
    duplicates: Counter[str] = field(default_factory=Counter)
    seen_duplicates: dict[str, int] = field(default_factory=dict)  # last counter value per running process
    poison: list[tuple[str, bytes]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)  # the scenarios run, in order
    relay_exit: int | None = None  # exit code of the relay told to crash between commit and publish
    scoring_events: dict[str, str] = field(default_factory=dict)  # interaction id -> the event scoring saw (verify)

    def log(self, message: str) -> None:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- the stream ------------------------------------------------------------------------------------


def interaction_body(customer_id: str, rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    body: dict[str, Any] = {"customer_id": customer_id, "channel": "web", "external_id": f"chaos-{uuid.uuid4()}"}
    if roll < 0.6:
        body |= {"type": "purchase", "amount": round(rng.uniform(5, 500), 2), "currency": "EUR", "quantity": 1}
    elif roll < 0.85:
        body |= {
            "type": "complaint",
            "severity": rng.choice(["low", "medium", "high", "critical"]),
            "category": "delivery",
        }
    else:
        body |= {"type": "survey", "survey": "nps", "score": rng.randint(0, 10)}
    return body


async def stream(run: Run, rate: float, total: int, stop: asyncio.Event, max_in_flight: int = 0) -> None:
    """Open-loop load: one request every 1/rate seconds, whatever the answers, until stop (or total, if not 0).

    With max_in_flight, a send waits while that many requests are unanswered (the schedule slips instead of
    a backlog of retries growing without bound on a machine that cannot keep up)."""
    rng = random.Random(7)
    in_flight: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    slipped = 0.0
    for n in range(total) if total else itertools.count():
        if stop.is_set():
            break
        await asyncio.sleep(max(0.0, started + slipped + n / rate - time.monotonic()))
        if max_in_flight and len(in_flight) >= max_in_flight:
            waited = time.monotonic()
            while len(in_flight) >= max_in_flight and not stop.is_set():
                await asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED)
            slipped += time.monotonic() - waited
        body = interaction_body(rng.choice(run.customers), rng)
        task = asyncio.create_task(_post(run, body, run.scenario))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)


async def _post(run: Run, body: dict[str, Any], scenario: str) -> None:
    run.sent[scenario] += 1
    sent_at = time.time()
    # A client retries with the same external id until it gets an answer: the interaction service is
    # idempotent by external id, so a retry after a lost answer cannot record twice.
    for _attempt in range(60):
        try:
            response = await run.gateway.post("/api/v1/interactions", json=body, headers=run.headers)
        except httpx.HTTPError:
            await asyncio.sleep(0.5)
            continue
        if response.status_code in (200, 201):
            data = response.json()
            run.acknowledged.append(
                Sent(data["id"], body["customer_id"], body["type"], body.get("severity"), scenario, sent_at)
            )
            return
        if response.status_code < 500:
            run.log(f"rejected {response.status_code}: {response.text[:200]}")
            return
        await asyncio.sleep(0.5)


# ---- scenarios --------------------------------------------------------------------------------------


async def scrape_duplicates(run: Run, name: str) -> None:
    """Credit the current scenario with the duplicates a consumer skipped since the last look."""
    port = run.platform.specs[name].port
    with contextlib.suppress(httpx.HTTPError):
        text = (await run.gateway.get(f"http://127.0.0.1:{port}/metrics")).text
        value = sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("crm_events_duplicate_total{")
        )
        run.duplicates[run.scenario] += value - run.seen_duplicates.get(name, 0)
        run.seen_duplicates[name] = value


async def scrape_all(run: Run) -> None:
    for name in list(run.platform.running):
        if name.endswith("-consumer") or name.endswith("-consumer-2"):
            await scrape_duplicates(run, name)


async def restart(run: Run, name: str, *, kill: bool = True, env: dict[str, str] | None = None) -> None:
    if name in CONSUMERS:
        await scrape_duplicates(run, name)
        run.seen_duplicates[name] = 0  # the new process counts from zero
    (run.platform.kill if kill else run.platform.stop)(name)
    run.platform.start(name, env=env)
    await asyncio.to_thread(run.platform.wait_ready, [name], 120)


async def kill_broker(run: Run, times: int) -> None:
    for _ in range(times):
        run.infra.kafka_ctl("kill")
        await asyncio.sleep(3)  # writes keep being accepted into the outboxes meanwhile
        await asyncio.to_thread(run.infra.kafka_ctl, "start")
        await asyncio.sleep(4)


async def kill_consumers(run: Run, times: int) -> None:
    for _ in range(times):
        for name in ("scoring-consumer", "retention-consumer", "interaction-consumer"):
            await asyncio.sleep(1.5)  # mid-stream, so a batch is in flight
            await restart(run, name)


async def scale_consumers(run: Run, _times: int) -> None:
    spec = run.platform.specs["scoring-consumer"]
    second = "scoring-consumer-2"
    run.platform.specs[second] = another_instance(spec, second, spec.port + 50)  # HIGHEST_BASE_PORT
    run.platform.start(second)
    await asyncio.to_thread(run.platform.wait_ready, [second], 120)
    await asyncio.sleep(8)  # two instances share the partitions under load
    await scrape_duplicates(run, second)
    run.platform.stop(second)
    await asyncio.sleep(4)


async def restart_postgres(run: Run, _times: int) -> None:
    await asyncio.to_thread(run.infra.pg_ctl, "restart")
    await asyncio.sleep(5)


async def replay_offsets(run: Run, _times: int) -> None:
    """Rewind the scoring and retention groups by a share of what they consumed: a double delivery."""
    for group in ("scoring", "retention"):
        name = f"{group}-consumer"
        await scrape_duplicates(run, name)
        run.seen_duplicates[name] = 0
        run.platform.stop(name)
        await rewind_group(run.infra.kafka, group, topics.INTERACTION, share=0.3)
        run.platform.start(name)
        await asyncio.to_thread(run.platform.wait_ready, [name], 120)


async def rewind_group(bootstrap: str, group: str, topic: str, share: float) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap, topic)
        consumer.assign(partitions)
        offsets = {}
        for tp in partitions:
            committed = await consumer.committed(tp) or 0
            offsets[tp] = OffsetAndMetadata(max(0, committed - int(committed * share)), "")
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def send_poison(run: Run, _times: int) -> None:
    consumed = consumed_topics()
    producer = AIOKafkaProducer(bootstrap_servers=run.infra.kafka, acks="all")
    await producer.start()
    try:
        for topic in consumed:
            payload = POISON_PREFIX + uuid.uuid4().hex.encode()
            await producer.send_and_wait(topic, payload, key=b"chaos-poison")
            run.poison.append((topic, payload))
    finally:
        await producer.stop()
    await asyncio.sleep(2)


async def crash_between_commit_and_publish(run: Run, _times: int) -> None:
    """The interaction relay exits right after reading committed rows, before publishing them."""
    name = "interaction-relay"
    run.platform.stop(name)
    run.platform.start(name, env={"CRM_FAULT": "exit_before_publish"})
    popen = run.platform.running[name].popen
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.to_thread(popen.wait), 60)
    run.relay_exit = popen.returncode
    run.log(f"faulty relay exited with {popen.returncode} (70 = the injected crash)")
    run.platform.kill(name)  # in case it never met a row to crash on
    run.platform.start(name)
    await asyncio.to_thread(run.platform.wait_ready, [name], 120)


SCENARIOS: dict[str, Callable[[Run, int], Awaitable[None]]] = {
    "broker-sigkill": kill_broker,
    "consumer-sigkill": kill_consumers,
    "scale-1-2-1": scale_consumers,
    "postgres-restart": restart_postgres,
    "offset-replay": replay_offsets,
    "poison-messages": send_poison,
    "crash-commit-publish": crash_between_commit_and_publish,
}


def consumed_topics() -> dict[str, list[str]]:
    """Each consumed topic and the consumer groups (services) that read it, from the services' own SPECs."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in SERVICES:
        spec = importlib.import_module(f"services.{name}.main").SPEC
        for topic in spec.consumes:
            groups[topic].append(name)
    return dict(groups)


# ---- verification ------------------------------------------------------------------------------------


async def wait_idle(run: Run, timeout_s: float = 180) -> None:
    """Until no outbox holds unpublished rows and no consumer lags, twice in a row."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline:
        busy = 0
        for name in SERVICES:
            conn = await asyncpg.connect(run.infra.database_url(name, "postgresql"))
            try:
                busy += await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            finally:
                await conn.close()
        for name in CONSUMERS:
            with contextlib.suppress(httpx.HTTPError):
                text = (await run.gateway.get(f"http://127.0.0.1:{run.platform.specs[name].port}/metrics")).text
                busy += sum(
                    float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("crm_consumer_lag{")
                )
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 3:
            return
        await asyncio.sleep(1.0)
    raise TimeoutError("the pipeline did not drain")


async def fetch(infra: Infra, service: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(infra.database_url(service, "postgresql"))
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


@dataclass
class Row:
    scenario: str
    sent: int = 0
    acknowledged: int = 0
    stored: int = 0
    scored: int = 0
    alerts_expected: int = 0
    alerts_counted: int = 0
    duplicates_delivered: int = 0
    duplicated_effects: int = 0
    lost: int = 0


async def verify(run: Run) -> tuple[list[Row], dict[str, Any]]:
    ids = [s.interaction_id for s in run.acknowledged]
    stored = {
        r["id"] for r in await fetch(run.infra, "interaction", "SELECT id FROM interactions WHERE id = ANY($1)", ids)
    }

    # Which event each acknowledged interaction should have caused in scoring (surveys score via survey.answered).
    scoring_event: dict[str, str] = {}
    for record in await read_all(run.infra.kafka, topics.INTERACTION):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            envelope = orjson.loads(record.value)
            data = envelope["data"]
            interaction_id = data.get("interaction_id")
            scored_here = envelope["type"] == "survey.answered" or (
                envelope["type"] == "interaction.recorded" and data.get("type") != "survey"
            )
            if scored_here:
                scoring_event[interaction_id] = envelope["id"]
    run.scoring_events = scoring_event
    score_rows = Counter(
        r["caused_by"]
        for r in await fetch(
            run.infra, "scoring", "SELECT caused_by FROM scores WHERE caused_by = ANY($1)", list(scoring_event.values())
        )
    )
    alerts = await fetch(
        run.infra,
        "retention",
        "SELECT customer_id, sum(trigger_count) AS n FROM alerts"
        " WHERE reason = 'severe_complaint' GROUP BY customer_id",
    )
    counted = {r["customer_id"]: int(r["n"]) for r in alerts}

    rows: dict[str, Row] = {}
    expected_by_customer: Counter[str] = Counter()
    for name in dict.fromkeys(["warm-up", *run.ran, *run.sent, "cool-down"]):
        rows[name] = Row(name, sent=run.sent[name], duplicates_delivered=run.duplicates[name])
    for sent in run.acknowledged:
        row = rows[sent.scenario]
        row.acknowledged += 1
        row.stored += sent.interaction_id in stored
        event_id = scoring_event.get(sent.interaction_id)
        copies = score_rows.get(event_id, 0) if event_id else 0
        row.scored += copies >= 1
        row.duplicated_effects += max(0, copies - 1)
        row.lost += sent.interaction_id not in stored or copies == 0
        if sent.type == "complaint" and sent.severity in ("high", "critical"):
            row.alerts_expected += 1
            expected_by_customer[sent.customer_id] += 1
    alert_surplus = sum(max(0, counted.get(c, 0) - n) for c, n in expected_by_customer.items())
    alert_missing = sum(max(0, n - counted.get(c, 0)) for c, n in expected_by_customer.items())

    dead: dict[str, int] = {}
    groups = consumed_topics()
    for topic, payload in run.poison:
        found = [r for r in await read_all(run.infra.kafka, topics.dead_letter(topic)) if r.value == payload]
        dead[topic] = len(found)
    stray = 0
    for topic in groups:
        records = await read_all(run.infra.kafka, topics.dead_letter(topic))
        stray += sum(1 for r in records if not (r.value or b"").startswith(POISON_PREFIX))
    summary = {
        "alerts_surplus": alert_surplus,
        "alerts_missing": alert_missing,
        "dead_letters": dead,
        "dead_letters_expected": {t: len(groups[t]) for t, _ in run.poison},
        "stray_dead_letters": stray,
    }
    return list(rows.values()), summary


def print_table(rows: list[Row], summary: dict[str, Any]) -> None:
    header = ["scenario", "sent", "acked", "stored", "scored", "severe", "dup deliv", "dup effects", "lost"]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    total = Row("total")
    for row in rows:
        values = [
            row.sent,
            row.acknowledged,
            row.stored,
            row.scored,
            row.alerts_expected,
            row.duplicates_delivered,
            row.duplicated_effects,
            row.lost,
        ]
        print(f"| {row.scenario} | " + " | ".join(str(v) for v in values) + " |")
        for attr in (
            "sent",
            "acknowledged",
            "stored",
            "scored",
            "alerts_expected",
            "duplicates_delivered",
            "duplicated_effects",
            "lost",
        ):
            setattr(total, attr, getattr(total, attr) + getattr(row, attr))
    ratio = total.stored / total.acknowledged if total.acknowledged else 0.0
    print(
        f"| **total** | {total.sent} | {total.acknowledged} | {total.stored} | {total.scored} | "
        f"{total.alerts_expected} | {total.duplicates_delivered} | {total.duplicated_effects} | {total.lost} |"
    )
    print(
        f"\neffects stored / acknowledged = {ratio:.3f}; scored / acknowledged = "
        f"{(total.scored / total.acknowledged if total.acknowledged else 0):.3f}"
    )
    print(
        f"severe complaints counted in alerts: surplus {summary['alerts_surplus']}, missing {summary['alerts_missing']}"
    )
    print(
        f"dead letters per poison message: {summary['dead_letters']} (expected {summary['dead_letters_expected']}); "
        f"stray dead letters: {summary['stray_dead_letters']}"
    )


def failures(rows: list[Row], summary: dict[str, Any]) -> list[str]:
    problems = []
    acknowledged = sum(r.acknowledged for r in rows)
    if not acknowledged:
        problems.append("nothing was acknowledged")
    for row in rows:
        if row.lost or row.stored != row.acknowledged or row.scored != row.acknowledged:
            problems.append(f"{row.scenario}: {row.lost} lost")
        if row.duplicated_effects:
            problems.append(f"{row.scenario}: {row.duplicated_effects} duplicated effects")
    if sum(r.duplicates_delivered for r in rows) == 0:
        problems.append("no duplicate delivery was observed: the de-duplication path did not run")
    if summary["alerts_surplus"] or summary["alerts_missing"]:
        problems.append(f"alert counts off: {summary}")
    if summary["dead_letters"] != summary["dead_letters_expected"]:
        problems.append(f"dead letters {summary['dead_letters']} != expected {summary['dead_letters_expected']}")
    if summary["stray_dead_letters"]:
        problems.append(f"{summary['stray_dead_letters']} good events were dead-lettered")
    return problems


def coverage_problems(run: Run, rows: list[Row]) -> list[str]:
    """A scenario proves nothing unless the stream was flowing and the fault really happened."""
    sent = {row.scenario: row.sent for row in rows}
    problems = [
        f"scenario {name} ran without traffic: the stream had ended (raise --interactions)"
        for name in run.ran
        if not sent.get(name)
    ]
    if "crash-commit-publish" in run.ran and run.relay_exit != 70:
        problems.append(f"the relay did not crash between commit and publish (exit {run.relay_exit}, expected 70)")
    return problems


# ---- driver ---------------------------------------------------------------------------------------------


async def run_chaos(
    infra: Infra,
    *,
    interactions: int,
    rate: float,
    customers: int,
    repeat: int,
    scenarios: list[str],
    headers: dict[str, str] | None = None,
    registry: dict[str, Callable[[Run, int], Awaitable[None]]] | None = None,
    after: Callable[[Run, list[Row]], Awaitable[list[str]]] | None = None,
    warmup_s: float = 3.0,
) -> list[str]:
    """The stream with each named scenario of registry (default SCENARIOS) in turn, then the checks; after,
    if given, reports more on the verified run and returns further problems. Returns every problem found."""
    registry = registry or SCENARIOS
    log_dir = infra.state_dir / "chaos-logs"
    # Authentication stays on; the stream's admin token is not throttled (bench.auth).
    platform = infra.platform(layout="split", log_dir=log_dir, extra_env=UNTHROTTLED_ENV)
    try:
        await start_in_order(platform)
        async with httpx.AsyncClient(
            base_url=infra.gateway, timeout=15, limits=httpx.Limits(max_connections=64)
        ) as gateway:
            run = Run(infra, platform, gateway, headers=dict(headers or bearer_headers(sub="chaos")))
            for i in range(customers):
                response = await gateway.post(
                    "/api/v1/customers",
                    headers=run.headers,
                    json={"name": f"Chaos {i}", "kind": "company", "owner": "agent-1"},
                )
                response.raise_for_status()
                run.customers.append(response.json()["id"])
            cap = f"at most {interactions}" if interactions else "until the last scenario has run"
            run.log(f"{customers} customers; streaming interactions at {rate}/s, {cap}")
            stop = asyncio.Event()
            load = asyncio.create_task(stream(run, rate, interactions, stop))
            await asyncio.sleep(warmup_s)
            for name in scenarios:
                run.scenario = name
                run.ran.append(name)
                run.log(f"scenario {name}")
                await registry[name](run, repeat)
                await asyncio.sleep(2)
                await scrape_all(run)
            run.scenario = "cool-down"
            await asyncio.sleep(3)
            stop.set()
            await load
            run.log(f"stream done: {len(run.acknowledged)} acknowledged; waiting for the pipeline to drain")
            await wait_idle(run)
            await scrape_all(run)
            rows, summary = await verify(run)
            print_table(rows, summary)
            extra = await after(run, rows) if after else []
            not_ready = [n for n in platform.running if platform.exited().get(n) is not None]
            problems = failures(rows, summary) + coverage_problems(run, rows) + extra
            try:
                await asyncio.to_thread(platform.wait_ready, None, 60)
            except (TimeoutError, RuntimeError) as exc:
                problems.append(f"not ready at the end: {exc}")
            if not_ready:
                problems.append(f"exited: {not_ready}")
            return problems
    finally:
        platform.stop_all()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--interactions",
        type=int,
        default=0,
        help="at most this many (default 0: no cap; the stream flows until the last scenario has run)",
    )
    parser.add_argument("--rate", type=float, default=60.0, help="interactions per second through the gateway")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="how often each kill is repeated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args(argv)
    # Ports below Linux's ephemeral range (32768+), so outgoing connections cannot take them first.
    infra = Infra(REPO_ROOT / ".state" / "chaos", kafka_port=29092, pg_port=29432, port_offset=port_offset())
    infra.start()
    try:
        problems = asyncio.run(
            run_chaos(
                infra,
                interactions=args.interactions,
                rate=args.rate,
                customers=args.customers,
                repeat=args.repeat,
                scenarios=args.scenarios.split(","),
            )
        )
    finally:
        infra.stop()
    if problems:
        print("\nFAILED:\n- " + "\n- ".join(problems))
        sys.exit(1)
    print("\nall guarantees held")


if __name__ == "__main__":
    main()
