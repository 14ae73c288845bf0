"""Infrastructure for benchmarks and fault injection: a private Kafka + PostgreSQL and the platform on them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from runner.launcher import LAYOUTS as LAYOUTS  # the benches' --layout choices
from runner.launcher import SERVICES, Platform, ProcessSpec, platform_processes
from servicekit.settings import GATEWAY_PORT, REPO_ROOT, KafkaSettings

DEPLOY = REPO_ROOT / "deploy"


@dataclass(frozen=True)
class Infra:
    """Ports and names of one private set of infrastructure, apart from `make run` and `make test`."""

    state_dir: Path
    kafka_port: int
    pg_port: int
    port_offset: int
    db_prefix: str = ""
    kafka_controller_port: int | None = None  # default: kafka_port + 1
    kafka_brokers: int = 1  # nodes of the cluster deploy/kafka.sh runs (KAFKA_BROKERS)
    kafka_port_step: int = 10  # port distance between its nodes (KAFKA_PORT_STEP)

    @property
    def kafka(self) -> str:
        """The bootstrap servers: every node's address."""
        return ",".join(f"127.0.0.1:{port}" for port in self.kafka_ports)

    @property
    def kafka_ports(self) -> list[int]:
        """Each node's PLAINTEXT port, node 1 first."""
        return [self.kafka_port + i * self.kafka_port_step for i in range(self.kafka_brokers)]

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{GATEWAY_PORT + self.port_offset}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CRM_STATE_DIR": str(self.state_dir),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port or self.kafka_port + 1),
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "KAFKA_BROKERS": str(self.kafka_brokers),
            "KAFKA_PORT_STEP": str(self.kafka_port_step),
            "KAFKA_REPLICATION_FACTOR": str(min(self.kafka_brokers, 3)),
            "PG_PORT": str(self.pg_port),
            "PG_DATABASES": " ".join(self.database(name) for name in SERVICES),
        }

    def database(self, service: str) -> str:
        return f"{self.db_prefix}{service}"

    def database_url(self, service: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.pg_port}/{self.database(service)}"

    def kafka_ctl(self, command: str, node: int | None = None) -> str:
        """deploy/kafka.sh <command> on every node, or on one (1-based); returns what it printed."""
        env = self.env() | ({"KAFKA_NODE": str(node)} if node is not None else {})
        done = subprocess.run(
            ["bash", str(DEPLOY / "kafka.sh"), command], check=True, env=env, stdout=subprocess.PIPE, text=True
        )
        return done.stdout

    def pg_ctl(self, command: str) -> None:
        subprocess.run(["bash", str(DEPLOY / "postgres.sh"), command], check=True, env=self.env())

    @contextlib.contextmanager
    def postgres(self, *, fresh: bool = True, keep: bool = False) -> Iterator[None]:
        """PostgreSQL running for the block (its databases emptied first when fresh), stopped after it
        unless keep."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.pg_ctl("start")
        if fresh:
            self.pg_ctl("reset-dbs")
        try:
            yield
        finally:
            if not keep:
                self.pg_ctl("stop")

    def start(self, *, fresh_kafka: bool = True) -> None:
        if fresh_kafka:
            self.kafka_ctl("reset")
        self.kafka_ctl("start")
        self.pg_ctl("start")
        self.pg_ctl("reset-dbs")
        subprocess.run(
            [sys.executable, "-m", "runner.topic_setup", "ensure"], check=True, env=self.env(), cwd=REPO_ROOT
        )

    def stop(self) -> None:
        for ctl in (self.kafka_ctl, self.pg_ctl):
            with contextlib.suppress(subprocess.CalledProcessError):
                ctl("stop")

    def platform(self, *, layout: str, log_dir: Path, extra_env: dict[str, str] | None = None) -> Platform:
        """The platform on this infrastructure, each service's roles in processes as LAYOUTS[layout] says:
        `make run`'s own process list (runner.launcher.platform_processes) on this Kafka and PostgreSQL."""
        specs = platform_processes(
            database_urls={name: self.database_url(name) for name in SERVICES},
            extra_env={"KAFKA_BOOTSTRAP_SERVERS": self.kafka, **(extra_env or {})},
            port_offset=self.port_offset,
            layout=layout,
        )
        return Platform(specs, log_dir=log_dir, base_env=self.env())

    def fresh_platform(self, *, layout: str, extra_env: dict[str, str] | None = None) -> Platform:
        """The platform (as `platform`) logging to an emptied ``<state_dir>/logs``."""
        log_dir = self.state_dir / "logs"
        shutil.rmtree(log_dir, ignore_errors=True)
        return self.platform(layout=layout, log_dir=log_dir, extra_env=extra_env)


LAYOUT_TEXT = {
    "split": "API, relay and consumer of each service as separate processes",
    "combined": "one process per service (API, relay and consumer)",
    "consumer-apart": "two processes per service: API with its relay, and the consumer",
}


def another_instance(spec: ProcessSpec, name: str, port: int) -> ProcessSpec:
    """One more instance of a process (e.g. a consumer joining its group), serving health on its own port.
    The roles stay the last argument, after ``--port N``, as the launcher puts them."""
    assert spec.argv[-3] == "--port", spec.argv
    return ProcessSpec(name, [*spec.argv[:-2], str(port), spec.argv[-1]], port, dict(spec.env))


def pid_file(path: Path) -> int | None:
    """The pid a pid file names (Kafka's kafka.pid, PostgreSQL's postmaster.pid), None without one."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(path.read_text().split()[0])
    return None


def postgres_pids(state_dir: Path) -> list[int]:
    """The PostgreSQL server under state_dir: its postmaster and the postmaster's children (backends)."""
    postmaster = pid_file(state_dir / "postgres" / "data" / "postmaster.pid")
    if postmaster is None:
        return []
    children = []
    for task in Path(f"/proc/{postmaster}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return [postmaster, *children]


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU time a process has used so far, from /proc; with reaped_children, plus that of
    its children that have exited (a PostgreSQL postmaster's closed backends)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


async def start_in_order(platform: Platform, timeout_s: float = 180) -> None:
    """The API processes first (they migrate the databases), then relays and consumers; until all are ready."""
    apis = [n for n in platform.specs if n in SERVICES or n == "gateway"]
    for name in apis:
        platform.start(name)
    await asyncio.to_thread(platform.wait_ready, apis, timeout_s)
    for name in platform.specs:
        if name not in platform.running:
            platform.start(name)
    await asyncio.to_thread(platform.wait_ready, None, timeout_s)


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def ensure_topic(kafka: KafkaSettings, topic: str) -> None:
    """A benchmark's own topic (not one of the platform's), with the platform's partitions and replication."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, kafka.partitions, kafka.replication_factor)])
    finally:
        await admin.close()


def report_start(layout: str) -> dict[str, Any]:
    """The opening keys of a bench report: the machine and its load, the process layout, the start time."""
    return {
        "machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()},
        "layout": LAYOUT_TEXT[layout],
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_on_fresh_infra(
    infra: Infra, bench: str, run: Callable[[], Coroutine[Any, Any, dict[str, Any]]], *, keep_infra: bool
) -> dict[str, Any]:
    """One bench run on its own Kafka + PostgreSQL: started fresh, stopped afterwards (unless keep_infra),
    one run per state directory at a time; returns what ``run()`` reports."""
    infra.state_dir.mkdir(parents=True, exist_ok=True)
    with open(infra.state_dir / "bench.lock", "w") as lock:
        # A second run would reset the broker and the databases under the first one.
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(f"another {bench} run is using {infra.state_dir}")
        infra.start()
        try:
            return asyncio.run(run())
        finally:
            if not keep_infra:
                infra.stop()


def write_report(report: dict[str, Any], path: Path, print_report: Callable[[dict[str, Any]], None]) -> None:
    """The report as JSON at ``path``, then printed for a reader."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"\n(JSON: {path})")
