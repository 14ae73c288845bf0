"""Scale-out of the scoring consumer: ``python -m bench.scaleout`` (`make scaleout`, `make bench-scaleout`).

Shows how instances of the scoring consumer share the partitions of their group and what that does to
throughput, measured in one run against real Kafka and PostgreSQL (`--instances 1,2,4` instance counts,
`--partitions P` partitions per topic; `make scaleout` compares 1 and 2 on the default 6 partitions):

1. A private broker and database server (bench.infra); the scoring database migrated to head.
2. Phase "1 instance": a backlog of events is produced to the topics scoring reads while no scoring
   consumer runs - what the interaction and customer services would have published for a batch of new
   customers (customer.created, then purchases, complaints with complaint.opened, surveys with
   survey.answered; key = customer id, as their outbox relays publish them). Then one consumer process
   starts and drains it.
3. One more phase per further instance count: a fresh backlog of the same shape (new customers, same
   mix and size), drained by that many consumer processes in the same group.

Throughput is handled events per second: rows the consumers committed to the scoring inbox (one per
event scoring has a handler for; complaint.opened is read and skipped). It is measured over the steady
window, from the moment the broker reports the group Stable with every instance joined until
the backlog is drained, so process start-up and the join/rebalance are left out of both phases alike;
the wall time from process start is printed too. The partition assignment comes from the group
coordinator (DescribeGroups); each instance's own metrics say which partitions it committed and how many
events it handled, and /proc how much CPU it used. The scoring relay does not run (score.updated rows
stay in the outbox): the consumers alone are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from bench.infra import Infra, another_instance, cpu_seconds, pid_file, postgres_pids
from contracts import topics
from contracts.customer import CustomerCreated
from contracts.interaction import ComplaintOpened, InteractionRecorded, SurveyAnswered
from runner.launcher import Platform
from servicekit.events.envelope import CloudEvent, EventData
from servicekit.kafka import topic_partitions
from servicekit.settings import REPO_ROOT

GROUP = "scoring"  # ScoringSettings.consumer_group
HANDLED_TYPES = {"customer.created", "interaction.recorded", "survey.answered"}


def log(message: str) -> None:
    print(f"[scaleout {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- the backlog (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes
    handled: bool  # scoring has a handler for it, so it leaves an inbox row


def _message(data: EventData, source: str) -> Message:
    envelope = CloudEvent.wrap(data, source=source)
    return Message(data.topic, data.subject().encode(), envelope.to_json(), envelope.type in HANDLED_TYPES)


def backlog(customers: int, events: int, seed: int) -> list[Message]:
    """What the customer and interaction services publish for `customers` new customers and `events`
    interactions among them (60 % purchases, 25 % complaints, 15 % NPS surveys), over the last year."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=365)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(customers)]
    out = [
        _message(
            CustomerCreated(customer_id=c, kind="company", status="active", segment="smb", created_at=start),
            "/crm/customer",
        )
        for c in ids
    ]
    for n in range(events):
        customer = rng.choice(ids)
        at = start + timedelta(days=365 * (n + 1) / (events + 1))
        interaction = str(uuid.UUID(int=rng.getrandbits(128)))
        roll = rng.random()
        if roll < 0.6:
            amount = Decimal(str(round(rng.uniform(5, 500), 2)))
            recorded = InteractionRecorded(
                customer_id=customer,
                interaction_id=interaction,
                type="purchase",
                channel="web",
                occurred_at=at,
                amount=amount,
                currency="EUR",
                quantity=1,
            )
            out.append(_message(recorded, "/crm/interaction"))
        elif roll < 0.85:
            severity = rng.choice(["low", "medium", "high", "critical"])
            out.append(
                _message(
                    InteractionRecorded(
                        customer_id=customer,
                        interaction_id=interaction,
                        type="complaint",
                        channel="phone",
                        occurred_at=at,
                        severity=severity,
                        category="delivery",
                    ),
                    "/crm/interaction",
                )
            )
            opened = ComplaintOpened(
                customer_id=customer,
                complaint_id=interaction,
                severity=severity,
                category="delivery",
                opened_at=at,
                due_at=at + timedelta(hours=48),
            )
            out.append(_message(opened, "/crm/interaction"))
        else:
            score = rng.randint(0, 10)
            recorded = InteractionRecorded(
                customer_id=customer, interaction_id=interaction, type="survey", channel="email", occurred_at=at
            )
            out.append(_message(recorded, "/crm/interaction"))
            answered = SurveyAnswered(
                customer_id=customer, interaction_id=interaction, survey="nps", score=score, answered_at=at
            )
            out.append(_message(answered, "/crm/interaction"))
    return out


# ---- Kafka and the database -------------------------------------------------------------------------


async def produce(bootstrap: str, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        step = max(1, len(messages) // 5)
        for i in range(0, len(messages), step):
            chunk = messages[i : i + step]
            futures = [await producer.send(m.topic, m.value, key=m.key) for m in chunk]
            await asyncio.gather(*futures)
            log(f"  produced {min(i + step, len(messages))}/{len(messages)}")
    finally:
        await producer.stop()


async def handled_count(infra: Infra) -> int:
    conn = await asyncpg.connect(infra.database_url("scoring", "postgresql"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", GROUP))
    finally:
        await conn.close()


async def describe_group(admin: AIOKafkaAdminClient) -> tuple[str, list[list[str]]]:
    """The group's state and, per member, its assigned partitions as 'topic/partition'."""
    try:
        [response] = await admin.describe_consumer_groups([GROUP])
    except KafkaError:  # e.g. no coordinator yet: the offsets topic is created on the first join
        return "Unknown", []
    group = response.groups[0]
    state, members = group[2], group[5]
    assignments: list[list[str]] = []
    for member in members:
        raw = member[-1]
        if not raw:
            assignments.append([])
            continue
        assignment = ConsumerProtocolMemberAssignment.decode(raw)
        assignments.append(sorted(f"{tp.topic}/{tp.partition}" for tp in assignment.partitions()))
    return state, sorted(assignments)


# ---- CPU accounting over the steady window -------------------------------------------------------------


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class CpuSample:
    """CPU seconds used so far by each group of processes, and the machine's ticks."""

    at: float
    machine: tuple[int, int]
    by_pid: dict[str, dict[int, float]]

    @classmethod
    def take(cls, infra: Infra, consumers: dict[str, int]) -> CpuSample:
        groups: dict[str, list[int]] = {name: [pid] for name, pid in consumers.items()}
        if postgres := postgres_pids(infra.state_dir):
            groups["postgresql"] = postgres
        if (broker := pid_file(infra.state_dir / "kafka" / "kafka.pid")) is not None:
            groups["kafka"] = [broker]
        by_pid: dict[str, dict[int, float]] = {}
        for name, pids in groups.items():
            by_pid[name] = {}
            for pid in pids:
                try:
                    by_pid[name][pid] = cpu_seconds(pid)
                except (OSError, ValueError, IndexError):  # exited meanwhile
                    continue
        return cls(time.monotonic(), machine_ticks(), by_pid)

    def cores_used_since(self, earlier: CpuSample) -> dict[str, float]:
        """Average cores busy per group between two samples (a backend that exited meanwhile is missed)."""
        seconds = self.at - earlier.at
        used = {
            name: sum(cpu - earlier.by_pid.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items()) / seconds
            for name, pids in self.by_pid.items()
        }
        busy = self.machine[0] - earlier.machine[0]
        total = self.machine[1] - earlier.machine[1]
        cores = os.cpu_count() or 1
        used["machine"] = cores * busy / max(1, total)
        used["everything else"] = used["machine"] - sum(v for k, v in used.items() if k != "machine")
        return used


# ---- one phase ----------------------------------------------------------------------------------------


@dataclass
class Instance:
    name: str
    handled: int = 0  # crm_events_handled_total (see report() for what it counts)
    duplicates: int = 0  # crm_events_duplicate_total: re-deliveries the inbox skipped
    partitions: list[str] = field(default_factory=list)


@dataclass
class Phase:
    instances: int
    events: int  # events in the backlog that scoring handles (one inbox row each)
    messages: int
    wall_s: float = 0.0  # from starting the processes to drained
    window_s: float = 0.0  # steady window: group Stable with every instance assigned, to drained
    window_events: int = 0
    assignment: list[list[str]] = field(default_factory=list)
    per_instance: list[Instance] = field(default_factory=list)
    cores: dict[str, float] = field(default_factory=dict)  # average cores busy during the window, by group

    @property
    def rate(self) -> float:
        return self.window_events / self.window_s if self.window_s else 0.0


async def scrape(client: httpx.AsyncClient, port: int, instance: Instance) -> None:
    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    partitions = set()
    for line in text.splitlines():
        if line.startswith("crm_events_handled_total{"):
            instance.handled += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("crm_events_duplicate_total{"):
            instance.duplicates += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("crm_consumer_lag{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
            partitions.add(f"{labels['topic'].strip(chr(34))}/{labels['partition'].strip(chr(34))}")
    instance.partitions = sorted(partitions, key=lambda p: (p.rsplit("/", 1)[0], int(p.rsplit("/", 1)[1])))


async def run_phase(infra: Infra, platform: Platform, names: list[str], messages: list[Message]) -> Phase:
    phase = Phase(len(names), sum(m.handled for m in messages), len(messages))
    log(f"phase {len(names)} instance(s): producing a backlog of {len(messages)} messages ({phase.events} handled)")
    await produce(infra.kafka, messages)
    base = await handled_count(infra)
    target = base + phase.events
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
    await admin.start()
    started = time.monotonic()
    for name in names:
        platform.start(name)
    pids = {name: platform.running[name].popen.pid for name in names}
    try:
        window_start: tuple[int, CpuSample] | None = None
        last_report = 0.0
        while True:
            if exited := platform.exited():
                raise RuntimeError(f"consumer exited: {exited}\n{platform.log_tail(next(iter(exited)))}")
            done = await handled_count(infra)
            now = time.monotonic()
            if window_start is None:
                state, assignment = await describe_group(admin)
                # A member may hold nothing when instances outnumber partitions: it stands by.
                if state == "Stable" and len(assignment) == len(names):
                    window_start = (done, CpuSample.take(infra, pids))
                    phase.assignment = assignment
                    log(f"  group Stable after {now - started:.1f}s with {len(names)} member(s); {done - base} handled")
            if now - last_report >= 5:
                last_report = now
                log(f"  {done - base}/{phase.events} handled, {now - started:.0f}s")
            if done >= target:
                break
            await asyncio.sleep(0.2)
        if window_start is None:
            raise RuntimeError("the backlog drained before the group was stable; use a larger --events")
        end = CpuSample.take(infra, pids)
        n0, first = window_start
        phase.wall_s = end.at - started
        phase.window_s = end.at - first.at
        phase.window_events = target - n0
        phase.cores = end.cores_used_since(first)
        state, assignment = await describe_group(admin)
        if assignment != phase.assignment:
            log(f"  note: the assignment changed during the window: now {state} {assignment}")
        async with httpx.AsyncClient(timeout=5) as client:
            for name in names:
                instance = Instance(name)
                await scrape(client, platform.specs[name].port, instance)
                phase.per_instance.append(instance)
        log(f"  drained: {phase.rate:.0f} events/s over the steady window ({phase.window_s:.1f}s)")
        return phase
    finally:
        await admin.close()
        for name in names:
            platform.stop(name)


# ---- report -------------------------------------------------------------------------------------------


def assignment_counts(assignment: list[list[str]]) -> str:
    """Partitions held per member, e.g. '4+4' (one member per figure, most first)."""
    return "+".join(str(n) for n in sorted((len(a) for a in assignment), reverse=True))


def report(phases: list[Phase], partitions: int, topics_read: int) -> None:
    cores = os.cpu_count() or 1
    print(
        f"\nscoring consumer scale-out ({partitions} partitions per topic, {topics_read} topics read, "
        f"{partitions * topics_read} partitions in all; {cores} cores on this machine)\n"
    )
    print(
        "| instances | backlog (handled events) | steady window | events/s | ratio to 1 instance "
        "| partitions per member | wall time from start |"
    )
    print("|---|---|---|---|---|---|---|")
    base: float | None = None
    for phase in phases:
        if phase.instances == 1:
            base = phase.rate
        ratio = f"{phase.rate / base:.2f}" if base else "-"
        print(
            f"| {phase.instances} | {phase.events} ({phase.messages} messages) | {phase.window_s:.1f} s "
            f"({phase.window_events} events) | {phase.rate:.0f} | {ratio} | {assignment_counts(phase.assignment)} "
            f"| {phase.wall_s:.1f} s |"
        )
    counts = sorted({phase.instances for phase in phases})
    if len(phases) > len(counts):
        means = {n: statistics.fmean(p.rate for p in phases if p.instances == n) for n in counts}
        print("\nmean over rounds: " + ", ".join(f"{n} instance(s) {rate:.0f} events/s" for n, rate in means.items()))
    groups = list(dict.fromkeys(g for phase in phases for g in phase.cores))
    print(f"\nCPU during the steady window, average cores busy (of {cores}):\n")
    print("| instances | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for phase in phases:
        print(f"| {phase.instances} | " + " | ".join(f"{phase.cores.get(g, 0.0):.2f}" for g in groups) + " |")
    for phase in phases[: len(counts)]:
        print(f"\n{phase.instances} instance(s), assignment by the group coordinator:")
        for i, assigned in enumerate(phase.assignment, 1):
            print(f"  member {i}: {len(assigned)} partitions: {', '.join(assigned) or '(none: standby)'}")
        for inst in phase.per_instance:
            print(
                f"  {inst.name}: {inst.handled} handled, {inst.duplicates} re-deliveries skipped; "
                f"committed offsets on: {', '.join(inst.partitions)}"
            )
    print(
        "\n(handled and skipped are each process's own counters; while the group rebalances, an instance that"
        "\n is losing partitions finishes its batch while the new owner reads the same records, so the inbox"
        "\n skips them there, and a process may have committed offsets on partitions it no longer holds.)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000, help="new customers per phase")
    parser.add_argument("--events", type=int, default=15000, help="interactions per phase")
    parser.add_argument(
        "--instances", default="1,2", help="instance counts to compare, in this order each round (e.g. 1,2,4)"
    )
    parser.add_argument("--partitions", type=int, help="partitions per topic (default: KAFKA_PARTITIONS, 6)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="go through the instance counts this often (evens out a noisy machine)"
    )
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "scaleout")
    # Ports below Linux's ephemeral range (32768+), apart from make chaos (29092/29432/20000) and make test.
    parser.add_argument("--kafka-port", type=int, default=29692)
    parser.add_argument("--pg-port", type=int, default=29732)
    parser.add_argument("--port-offset", type=int, default=21000)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.instances.split(",")]
    if args.partitions:
        # A fresh broker each run (Infra.start resets it), so `runner.topic_setup ensure` creates them so.
        os.environ["KAFKA_PARTITIONS"] = str(args.partitions)

    infra = Infra(args.state_dir, kafka_port=args.kafka_port, pg_port=args.pg_port, port_offset=args.port_offset)
    log(f"starting Kafka on :{infra.kafka_port} and PostgreSQL on :{infra.pg_port} (state in {args.state_dir})")
    infra.start()
    try:
        asyncio.run(measure(infra, args.customers, args.events, counts, args.rounds, args.state_dir / "logs"))
    finally:
        infra.stop()


async def measure(infra: Infra, customers: int, events: int, counts: list[int], rounds: int, log_dir: Path) -> None:
    # The scoring consumer exactly as the platform runs it, and further instances of it in the same group.
    first = infra.platform(layout="split", log_dir=log_dir).specs["scoring-consumer"]
    specs = [first] + [
        another_instance(first, f"scoring-consumer-{n}", first.port + 50 * (n - 1)) for n in range(2, max(counts) + 1)
    ]
    platform = Platform(specs, log_dir=log_dir, base_env=infra.env())
    migrate = [sys.executable, "-m", "services.scoring", "migrate"]
    await asyncio.to_thread(subprocess.run, migrate, check=True, env={**infra.env(), **first.env}, cwd=REPO_ROOT)
    partitions = len(await topic_partitions(infra.kafka, topics.INTERACTION))
    phases: list[Phase] = []
    for n in range(rounds):
        for count in counts:
            names = [spec.name for spec in specs[:count]]
            # A fresh backlog of the same shape every phase: new customers, the same mix and size.
            messages = backlog(customers, events, seed=len(phases) + 1)
            phases.append(await run_phase(infra, platform, names, messages))
            log(f"round {n + 1}/{rounds}: {len(names)} instance(s) {phases[-1].rate:.0f} events/s")
    topics_read = len({topic.rsplit("/", 1)[0] for phase in phases for member in phase.assignment for topic in member})
    report(phases, partitions, topics_read)


if __name__ == "__main__":
    main()
