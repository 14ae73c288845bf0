"""`make run`'s process layout (CRM_LAYOUT): each service's roles in one process, or its consumer apart."""

from __future__ import annotations

import pytest

from runner.launcher import platform_processes


def _roles(specs: list) -> dict[str, tuple[str, int]]:
    """process name -> (roles, port) of the interaction service's processes."""
    return {s.name: (s.argv[-1], s.port) for s in specs if "interaction" in s.name}


def test_by_default_each_service_runs_its_api_relay_and_consumer_in_one_process(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CRM_LAYOUT", raising=False)
    specs = platform_processes(port_offset=1000)
    assert _roles(specs) == {"interaction": ("all", 9002)}
    assert len(specs) == 5  # four services and the gateway


def test_the_consumer_apart_layout_runs_each_consumer_in_a_process_of_its_own(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_LAYOUT", "consumer-apart")
    specs = platform_processes(port_offset=1000)
    assert _roles(specs) == {"interaction": ("api,relay", 9002), "interaction-consumer": ("consume", 9202)}
    assert len(specs) == 9
    consumer = next(s for s in specs if s.name == "interaction-consumer")
    # the consumer asks the same customer service as the API when its replica lags
    assert consumer.env["INTERACTION_CUSTOMER_URL"] == "http://127.0.0.1:9001"
    gateway = next(s for s in specs if s.name == "gateway")
    assert gateway.env["GATEWAY_INTERACTION_URL"] == "http://127.0.0.1:9002"  # the API, not the consumer


def test_an_unknown_layout_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_LAYOUT", "sideways")
    with pytest.raises(ValueError, match="layout"):
        platform_processes()
