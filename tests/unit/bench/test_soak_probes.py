"""The soak's evidence: its own ports from the environment, PostgreSQL's memory-context dumps read back from
the server log, and the statement-cache probe of a process's connections."""

from pathlib import Path

import pytest

from bench.cacheprobe import shape
from bench.pgmemory import by_group, label, parse_contexts, resident_mib
from bench.soak import soak_infra
from bench.soak_probes import contexts_by_round
from bench.soak_twins import cost_rows, parse_twin, twin_name

_AT = "2026-12-07 09:40:01.100 UTC [4242] postgres@retention LOG:  "
_FREE = "0 free (0 chunks)"
LOG = "\n".join(
    [
        f"{_AT}logging memory contexts of PID 4242",
        f"{_AT}level: 0; TopMemoryContext: 2048 total in 2 blocks; {_FREE}; 2048 used",
        f"{_AT}level: 1; CacheMemoryContext: 4096 total in 3 blocks; {_FREE}; 4096 used",
        f"{_AT}level: 2; CachedPlanSource: 1024 total in 1 blocks; {_FREE}; 1024 used: INSERT INTO inbox",
        f"{_AT}level: 3; CachedPlanQuery: 2048 total in 2 blocks; {_FREE}; 2048 used",
        f"{_AT}level: 2; 150 more child contexts containing 10240 total in 20 blocks; {_FREE}; 10240 used",
        f"{_AT}level: 1; MessageContext: 1024 total in 1 blocks; {_FREE}; 1024 used",
        f"{_AT}Grand total: 20480 bytes in 29 blocks; {_FREE}; 20480 used",
        "2026-12-07 09:40:01.200 UTC [99] postgres@scoring LOG:  statement: SELECT 1",
    ]
)


def test_soak_runs_on_the_ports_and_state_dir_the_environment_names(tmp_path: Path) -> None:
    infra = soak_infra(
        {
            "CRM_TEST_STATE_DIR": str(tmp_path),
            "CRM_TEST_KAFKA_PORT": "41000",
            "CRM_TEST_KAFKA_CONTROLLER_PORT": "41005",
            "CRM_TEST_PG_PORT": "41032",
            "CRM_SOAK_PORT_OFFSET": "17000",
        }
    )
    assert (infra.state_dir, infra.kafka_port, infra.kafka_controller_port, infra.pg_port) == (
        tmp_path,
        41000,
        41005,
        41032,
    )
    assert infra.port_offset == 17000
    assert infra.env()["KAFKA_CONTROLLER_PORT"] == "41005" and infra.env()["PG_PORT"] == "41032"


def test_soak_defaults_to_private_ports_apart_from_the_shared_test_ones() -> None:
    infra = soak_infra({})
    assert (infra.kafka_port, infra.kafka_controller_port, infra.pg_port) == (31500, 31501, 31532)
    assert infra.state_dir.name == "bench-soak"


def test_a_memory_context_dump_gives_the_backends_total_its_cache_subtree_and_its_plan_sources() -> None:
    [dump] = parse_contexts(LOG)[4242]
    assert dump["total_kib"] == 20.0
    # CacheMemoryContext itself, its named children and the 150 summarised, not MessageContext after it
    assert dump["cache_kib"] == (4096 + 1024 + 2048 + 10240) / 1024
    assert (dump["plan_sources"], dump["plan_kib"]) == (1, 3.0)


def test_dumps_are_summed_per_database_and_round_that_asked_for_them() -> None:
    at = parse_contexts(LOG)[4242][0]["at"]
    samples = [{"t_s": 60.0, "pg_dumped_at": at - 0.5, "pg_backends": {4242: "retention"}}, {"t_s": 70.0}]
    [row] = contexts_by_round(samples, LOG)["retention"]
    assert (row["t_s"], row["backends"], row["total_kib"], row["plan_sources"]) == (60.0, 1, 20.0, 1)


def test_a_prepared_statement_is_counted_by_its_kind_and_table() -> None:
    assert shape("INSERT INTO outbox (topic, key) SELECT given.topic") == "INSERT INTO outbox"
    assert shape("SELECT DISTINCT enrolment_wakes.customer_id FROM x") == "SELECT DISTINCT enrolment_wakes.customer_id"


def test_postgres_memory_splits_private_from_shared_buffers_touched() -> None:
    status = (
        "Name:\tpostgres\nVmRSS:\t  150000 kB\nRssAnon:\t    5120 kB\nRssFile:\t   10240 kB\nRssShmem:\t  131072 kB\n"
    )
    assert resident_mib(status) == {"anon": 5.0, "shmem": 128.0}


def test_postgres_processes_are_grouped_by_database_and_application_or_by_type() -> None:
    labels = {
        11: label("client backend", "interaction", "interaction api"),
        12: label("client backend", "interaction", "interaction api"),
        13: label("client backend", "retention", ""),
        14: label("autovacuum worker", "interaction", None),
    }
    memory = {
        10: {"anon": 2.0, "shmem": 1.0},  # the postmaster: not listed by pg_stat_activity
        11: {"anon": 5.5, "shmem": 40.0},
        12: {"anon": 5.0, "shmem": 90.0},
        13: {"anon": 4.0, "shmem": 20.0},
        14: {"anon": 30.0, "shmem": 60.0},
    }
    assert by_group(labels, memory) == {
        "autovacuum worker": {"processes": 1, "private_mib": 30.0, "shmem_max_mib": 60.0},
        "db interaction: interaction api": {"processes": 2, "private_mib": 10.5, "shmem_max_mib": 90.0},
        "db retention": {"processes": 1, "private_mib": 4.0, "shmem_max_mib": 20.0},
        "postmaster": {"processes": 1, "private_mib": 2.0, "shmem_max_mib": 1.0},
    }


def test_a_twin_consumer_is_named_as_a_consumer_and_gets_the_launchers_allocator() -> None:
    process, env = parse_twin("retention-consumer:CRM_CONSUMER_PYTHONMALLOC=malloc,RETENTION_X=30")
    assert process == "retention-consumer"
    assert env == {"CRM_CONSUMER_PYTHONMALLOC": "malloc", "RETENTION_X": "30", "PYTHONMALLOC": "malloc"}
    assert twin_name(process) == "retention-twin-consumer"


def test_a_twin_without_assignments_is_refused() -> None:
    with pytest.raises(ValueError, match="PROCESS:VAR=VALUE"):
        parse_twin("retention-consumer:PYTHONMALLOC")


def test_consumer_cost_is_cpu_per_event_handled_between_two_readings() -> None:
    start = {"a-consumer": {"cpu_s": 10.0, "handled": 1000.0}, "b-consumer": {"cpu_s": 1.0, "handled": 5.0}}
    end = {"a-consumer": {"cpu_s": 13.0, "handled": 3000.0}, "b-consumer": {"cpu_s": 1.5, "handled": 5.0}}
    assert cost_rows(start, end) == [
        {"process": "a-consumer", "events": 2000, "cpu_s": 3.0, "cpu_ms_per_event": 1.5},
        {"process": "b-consumer", "events": 0, "cpu_s": 0.5, "cpu_ms_per_event": None},
    ]
