"""The benches' platform is `make run`'s process list on the bench's own Kafka and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.infra import Infra, another_instance
from runner.launcher import LAYOUTS, platform_processes

INFRA = Infra(Path("/nonexistent/bench-infra"), kafka_port=30700, pg_port=30702, port_offset=1000)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_bench_starts_the_launchers_processes_with_the_same_arguments(layout: str) -> None:
    bench = INFRA.platform(layout=layout, log_dir=INFRA.state_dir / "logs").specs
    launcher = platform_processes(port_offset=INFRA.port_offset, layout=layout)
    assert [(s.name, s.argv, s.port) for s in bench.values()] == [(s.name, s.argv, s.port) for s in launcher]


def test_each_bench_process_gets_its_services_database_and_the_bench_kafka() -> None:
    specs = INFRA.platform(layout="consumer-apart", log_dir=INFRA.state_dir / "logs").specs
    consumer = specs["interaction-consumer"]
    assert consumer.env["INTERACTION_DATABASE_URL"] == "postgresql+asyncpg://postgres@127.0.0.1:30702/interaction"
    assert consumer.env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:30700"
    assert specs["gateway"].env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:30700"
    # one internal secret for the whole group, so the gateway's signed calls are accepted
    assert len({spec.env["CRM_INTERNAL_TOKEN"] for spec in specs.values()}) == 1


def test_the_roles_stay_the_last_argument_so_a_restart_can_swap_them() -> None:
    specs = INFRA.platform(layout="split", log_dir=INFRA.state_dir / "logs").specs
    consumer = specs["scoring-consumer"]
    assert consumer.argv[-3:] == ["--port", str(consumer.port), "consume"]
    twin = another_instance(consumer, "scoring-consumer-2", consumer.port + 50)
    assert twin.argv == [*consumer.argv[:-2], str(consumer.port + 50), "consume"]
    assert twin.port == consumer.port + 50
    assert twin.env == consumer.env and twin.env is not consumer.env
