"""Fault injection on a three-broker cluster: ``python -m bench.chaos_cluster`` (part of `make chaos`).

The same stream, checks and table as ``bench.chaos``, on a KRaft cluster of three nodes started by
deploy/kafka.sh with KAFKA_BROKERS=3 (every topic three replicas, min.insync.replicas 2; every producer of
the platform writes with acks=all and idempotence). The scenarios, each under load:

* leader-sigkill: SIGKILL to the node leading the busiest partition of the interaction topic, 10 s down;
* broker-stop-30s: a node that is not the active controller stopped for 30 s, then started again;
* controller-sigkill: SIGKILL to the node that is the active controller (KRaft quorum leader);
* pg-sigkill-<service>: once a transaction of that service's store is seen in flight, SIGKILL to the
  PostgreSQL server and all its backends at once, then a start (crash recovery from the WAL);
* offset-replay: the consumer groups rewound by 30%, so the de-duplication path runs for certain.

Time to recover, per scenario: how long after the fault every partition had all three replicas in sync
again (or PostgreSQL answered again), and from when on every interaction of the scenario went from its
acknowledgement to its score within the bound (twice the warm-up's p99, at least 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from bench.chaos import SCENARIOS as SINGLE_BROKER_SCENARIOS
from bench.chaos import Row, Run, fetch, run_chaos
from bench.infra import Infra, postgres_pids
from contracts import topics
from runner.launcher import SERVICES
from servicekit.kafka import topic_partitions
from servicekit.settings import REPO_ROOT

DOWN_S = 10.0  # how long a SIGKILLed node stays down before it is started again
STOP_S = 30.0  # how long the stopped node stays stopped


@dataclass
class Fault:
    scenario: str
    what: str
    at: float  # wall-clock time of the fault
    back_s: float | None = None  # until the failed part answered again
    in_sync_s: float | None = None  # until every partition had all its replicas in sync again


FAULTS: list[Fault] = []
PROBLEMS: list[str] = []  # found by the scenarios themselves


def infra_for(state_dir: os.PathLike[str] | str, port_offset: int) -> Infra:
    return Infra(
        REPO_ROOT / state_dir,
        kafka_port=30500,
        kafka_controller_port=30501,
        pg_port=30532,
        port_offset=port_offset,
        kafka_brokers=3,
    )


# ---- the cluster's state ------------------------------------------------------------------------------


async def partition_states(bootstrap: str) -> list[dict[str, object]]:
    """Leader, replicas and in-sync replicas of every partition of the platform's topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics.ALL))
    finally:
        await admin.close()
    out = []
    for topic in described:
        for p in topic["partitions"]:
            out.append(
                {
                    "topic": topic["topic"],
                    "partition": p["partition"],
                    "leader": p["leader"],
                    "replicas": list(p["replicas"]),
                    "isr": list(p["isr"]),
                }
            )
    return out


async def wait_in_sync(run: Run, since: float, timeout_s: float = 240) -> float | None:
    """Seconds from `since` until every partition has a leader and all its replicas in sync; None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a metadata request to a node that is still starting
            states = await partition_states(run.infra.kafka)
            if states and all(s["leader"] != -1 and set(s["isr"]) == set(s["replicas"]) for s in states):  # type: ignore[call-overload]
                return round(time.time() - since, 1)
        await asyncio.sleep(0.5)
    return None


async def busiest_partition(bootstrap: str, topic: str, window_s: float = 3.0) -> tuple[int, int]:
    """(partition, its leader's node id) of the topic's partition that grew most over window_s."""
    partitions = await topic_partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        before = await consumer.end_offsets(partitions)
        await asyncio.sleep(window_s)
        after = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    busiest = max(partitions, key=lambda tp: after[tp] - before[tp])
    leaders = {(s["topic"], s["partition"]): s["leader"] for s in await partition_states(bootstrap)}
    return busiest.partition, int(leaders[(topic, busiest.partition)])  # type: ignore[call-overload]


def quorum_leader(run: Run) -> int:
    return int(run.infra.kafka_ctl("quorum-leader").strip())


# ---- scenarios ----------------------------------------------------------------------------------------


async def bring_back(run: Run, fault: Fault, node: int) -> None:
    started = time.time()
    await asyncio.to_thread(run.infra.kafka_ctl, "start", node)
    fault.back_s = round(time.time() - fault.at, 1)
    run.log(f"node {node} back after {time.time() - started:.1f} s of start-up")
    fault.in_sync_s = await wait_in_sync(run, fault.at)
    FAULTS.append(fault)


async def kill_leader(run: Run, times: int) -> None:
    for _ in range(times):
        partition, node = await busiest_partition(run.infra.kafka, topics.INTERACTION)
        fault = Fault(run.scenario, f"SIGKILL node {node} (leader of {topics.INTERACTION}-{partition})", time.time())
        run.log(fault.what)
        await asyncio.to_thread(run.infra.kafka_ctl, "kill", node)
        await asyncio.sleep(DOWN_S)  # the outboxes keep publishing to the two nodes left (min.insync.replicas 2)
        await bring_back(run, fault, node)


async def stop_broker(run: Run, _times: int) -> None:
    controller = quorum_leader(run)
    node = next(n for n in (3, 2, 1) if n != controller)
    fault = Fault(run.scenario, f"SIGTERM node {node} for {STOP_S:.0f} s (controller: node {controller})", time.time())
    run.log(fault.what)
    await asyncio.to_thread(run.infra.kafka_ctl, "stop", node)
    await asyncio.sleep(STOP_S)
    await bring_back(run, fault, node)


async def kill_controller(run: Run, times: int) -> None:
    for _ in range(times):
        node = quorum_leader(run)
        fault = Fault(run.scenario, f"SIGKILL node {node} (active controller)", time.time())
        await asyncio.to_thread(run.infra.kafka_ctl, "kill", node)
        elected = None
        for _ in range(120):
            with contextlib.suppress(Exception):
                if (leader := quorum_leader(run)) != node:
                    elected = leader
                    break
            await asyncio.sleep(0.25)
        fault.what += f"; node {elected} elected after {time.time() - fault.at:.1f} s"
        run.log(fault.what)
        await asyncio.sleep(max(0.0, DOWN_S - (time.time() - fault.at)))
        await bring_back(run, fault, node)


async def create_customers(run: Run, stop: asyncio.Event, acknowledged: list[str]) -> None:
    """Customers created through the gateway every 0.2 s until stop: writes in the customer store, which
    the interaction stream barely touches. Not retried: a lost answer is simply not acknowledged."""
    n = 0
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            response = await run.gateway.post(
                "/api/v1/customers",
                headers=run.headers,
                json={"name": f"Chaos PG {n}", "kind": "company", "owner": "agent-1"},
            )
            if response.status_code == 201:
                acknowledged.append(response.json()["id"])
        n += 1
        await asyncio.sleep(0.2)


async def kill_postgres_mid_transaction(run: Run, _times: int, *, service: str) -> None:
    """SIGKILL to PostgreSQL (server and backends at once) while a write transaction of `service` is open."""
    database = run.infra.database(service)
    created: list[str] = []
    stop_creating = asyncio.Event()
    creating = asyncio.create_task(create_customers(run, stop_creating, created)) if service == "customer" else None
    watcher = await asyncpg.connect(run.infra.database_url(service, "postgresql"))
    seen = None
    try:
        deadline = time.monotonic() + 30
        while seen is None and time.monotonic() < deadline:
            # backend_xid is set once a transaction has written: a write in flight, not yet committed.
            seen = await watcher.fetchrow(
                "SELECT pid, state, left(query, 12) AS verb FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                " AND backend_xid IS NOT NULL LIMIT 1",
                database,
            )
            if seen is None:
                await asyncio.sleep(0.005)
    finally:
        pids = postgres_pids(run.infra.state_dir)
        at = time.time()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await watcher.close(timeout=1)
    what = "SIGKILL to PostgreSQL (server and all backends) "
    if seen is not None:
        verb = (seen["verb"].split() or ["?"])[0].upper()
        what += f"with a {service} write transaction open ({seen['state']}, {verb})"
    else:
        what += f"(no {service} write transaction seen in 30 s)"

    fault = Fault(run.scenario, what, at)
    run.log(what)
    await asyncio.to_thread(run.infra.pg_ctl, "kill")  # waits for every process to be gone
    await asyncio.sleep(2)
    await asyncio.to_thread(run.infra.pg_ctl, "start")
    fault.back_s = round(time.time() - at, 1)
    FAULTS.append(fault)
    await asyncio.sleep(3)
    if creating is not None:
        stop_creating.set()
        await creating
        await wait_answering(run, service)
        stored = await fetch(run.infra, "customer", "SELECT count(*) AS n FROM customers WHERE id = ANY($1)", created)
        fault.what += f"; customers created meanwhile: {len(created)} acknowledged, {stored[0]['n']} stored"
        if stored[0]["n"] != len(created):
            PROBLEMS.append(f"{run.scenario}: {len(created) - stored[0]['n']} acknowledged customers not stored")


async def wait_answering(run: Run, service: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(run.infra.database_url(service, "postgresql"))
            await conn.close()
            return
        await asyncio.sleep(0.5)


SCENARIOS: dict[str, Callable[[Run, int], Awaitable[None]]] = {
    "leader-sigkill": kill_leader,
    "broker-stop-30s": stop_broker,
    "controller-sigkill": kill_controller,
    **{f"pg-sigkill-{name}": partial(kill_postgres_mid_transaction, service=name) for name in SERVICES},
    "offset-replay": SINGLE_BROKER_SCENARIOS["offset-replay"],
}


# ---- time to recover -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def recovered_after(series: list[tuple[float, float]], fault_at: float, bound: float) -> float | None:
    """Seconds from the fault to the send of the last interaction over the bound, so that every one sent
    later stayed within it (0 if none was over); None if the scenario's last one was still over it.

    series: (sent at, seconds from send to score) of the scenario's interactions."""
    ordered = sorted(series)
    late = [t for t, latency in ordered if t >= fault_at and latency > bound]
    if not late:
        return 0.0
    if late[-1] == ordered[-1][0]:
        return None
    return late[-1] - fault_at


async def recovery(run: Run, rows: list[Row]) -> list[str]:
    """Print the time-to-recover table; a fault whose cluster never got back in sync is a problem."""
    events = [run.scoring_events[s.interaction_id] for s in run.acknowledged if s.interaction_id in run.scoring_events]
    scored_at = {
        r["caused_by"]: r["at"].timestamp()
        for r in await fetch(
            run.infra,
            "scoring",
            "SELECT caused_by, min(computed_at) AS at FROM scores WHERE caused_by = ANY($1) GROUP BY caused_by",
            events,
        )
    }
    latency: dict[str, list[tuple[float, float]]] = {}
    for s in run.acknowledged:
        event = run.scoring_events.get(s.interaction_id)
        if event in scored_at:
            latency.setdefault(s.scenario, []).append((s.sent_at, scored_at[event] - s.sent_at))
    warm = [lat for _, lat in latency.get("warm-up", [])]
    bound = max(1.0, 2 * percentile(warm, 0.99))
    print(
        f"\nsent -> scored in warm-up: p50 {statistics.median(warm) if warm else 0:.2f} s, "
        f"p99 {percentile(warm, 0.99):.2f} s; recovery bound {bound:.2f} s; load average {os.getloadavg()}"
    )
    header = ["scenario", "fault", "back s", "replicas in sync s", "e2e within bound after s", "max e2e s"]
    print("\n| " + " | ".join(header) + " |")
    print("|---|---|---:|---:|---:|---:|")
    problems = list(PROBLEMS)
    for fault in FAULTS:
        series = latency.get(fault.scenario, [])
        after = recovered_after(series, fault.at, bound)
        recovered = "> end of scenario" if after is None else f"{after:.1f}"
        worst = max((lat for t, lat in series if t >= fault.at), default=0.0)
        in_sync = "-" if fault.scenario.startswith("pg-") else (f"{fault.in_sync_s}" if fault.in_sync_s else "never")
        print(f"| {fault.scenario} | {fault.what} | {fault.back_s} | {in_sync} | {recovered} | {worst:.1f} |")
        if in_sync == "never":
            problems.append(f"{fault.scenario}: the partitions were not fully replicated again")
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60.0, help="interactions per second through the gateway")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2, help="how often each node kill is repeated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of stream before the first fault")
    parser.add_argument("--port-offset", type=int, default=22000, help="added to every platform port")
    args = parser.parse_args(argv)
    infra = infra_for(".state/chaos-cluster", args.port_offset)
    infra.start()
    try:
        problems = asyncio.run(
            run_chaos(
                infra,
                interactions=0,
                rate=args.rate,
                customers=args.customers,
                repeat=args.repeat,
                scenarios=args.scenarios.split(","),
                registry=SCENARIOS,
                after=recovery,
                warmup_s=args.warmup,
            )
        )
    finally:
        infra.stop()
    if problems:
        print("\nFAILED:\n- " + "\n- ".join(problems))
        sys.exit(1)
    print("\nall guarantees held on three brokers")


if __name__ == "__main__":
    main()
