"""The pure parts of the fault-injection and soak benches, and deploy/kafka.sh's cluster addressing."""

from __future__ import annotations

import subprocess

import pytest

from bench.chaos_cluster import recovered_after
from bench.infra import Infra
from bench.soak import growth
from servicekit.settings import REPO_ROOT


def test_recovered_after_is_the_last_late_send_after_the_fault() -> None:
    series = [(100.0, 9.0), (110.0, 0.5), (111.0, 4.0), (112.0, 3.5), (113.0, 0.4), (114.0, 0.6)]
    assert recovered_after(series, 110.0, bound=1.0) == 2.0  # the send at 112 was the last over 1 s


def test_recovered_after_ignores_late_sends_before_the_fault_and_says_none_when_never_back() -> None:
    assert recovered_after([(100.0, 9.0), (110.0, 0.5)], 105.0, bound=1.0) == 0.0
    assert recovered_after([(110.0, 0.5), (111.0, 5.0)], 105.0, bound=1.0) is None


def test_growth_compares_the_first_sample_after_warm_up_with_the_median_of_the_last_three() -> None:
    samples = [
        {"t_s": t, "rss_mib": {"gateway": rss, "kafka": 400.0}}
        for t, rss in [(0, 50.0), (60, 100.0), (70, 101.0), (80, 130.0), (90, 104.0), (100, 105.0)]
    ]
    rows = {r["process"]: r for r in growth(samples, warmup_s=60)}
    assert rows["gateway"]["after_warmup_mib"] == 100.0
    assert rows["gateway"]["end_mib"] == 105.0  # median of 130, 104, 105: one high sample does not decide
    assert rows["gateway"]["max_mib"] == 130.0
    assert rows["gateway"]["growth"] == pytest.approx(0.05)
    assert rows["kafka"]["growth"] == 0.0


def test_a_three_broker_infra_names_every_node_and_asks_for_three_replicas() -> None:
    infra = Infra(REPO_ROOT / ".state" / "x", kafka_port=30500, pg_port=1, port_offset=0, kafka_brokers=3)
    assert infra.kafka == "127.0.0.1:30500,127.0.0.1:30510,127.0.0.1:30520"
    env = infra.env()
    assert (env["KAFKA_BROKERS"], env["KAFKA_REPLICATION_FACTOR"]) == ("3", "3")
    script = subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "kafka.sh"), "bootstrap"], env=env, capture_output=True, text=True
    )
    assert script.stdout.strip() == infra.kafka


def test_a_single_broker_infra_is_unchanged() -> None:
    infra = Infra(REPO_ROOT / ".state" / "x", kafka_port=19092, pg_port=1, port_offset=0)
    assert infra.kafka == "127.0.0.1:19092"
    assert infra.env()["KAFKA_REPLICATION_FACTOR"] == "1"
