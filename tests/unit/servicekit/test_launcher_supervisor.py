"""`make run` restarts a crashed process as a supervisor would (runner.launcher.RestartPolicy/Supervisor)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from runner.launcher import (
    Platform,
    ProcessSpec,
    RestartPolicy,
    RestartState,
    Supervisor,
    next_restart,
    platform_processes,
)

POLICY = RestartPolicy(initial_s=1, factor=2, max_s=30, stable_after_s=60, immediate_s=5, max_immediate_failures=5)


def _delays(uptimes: list[float], policy: RestartPolicy = POLICY) -> list[float | None]:
    state, delays = RestartState(), []
    for uptime in uptimes:
        state, delay = next_restart(policy, state, uptime)
        delays.append(delay)
    return delays


def test_backoff_doubles_from_the_initial_delay_after_each_crash() -> None:
    assert _delays([10, 10, 10, 10]) == [1, 2, 4, 8]


def test_backoff_is_capped() -> None:
    assert _delays([10] * 8)[-3:] == [30, 30, 30]


def test_a_stable_run_resets_the_backoff() -> None:
    assert _delays([10, 10, 10, 61]) == [1, 2, 4, 1]


def test_repeated_immediate_failures_give_up() -> None:
    assert _delays([0.5, 0.5, 0.5, 0.5, 0.5]) == [1, 2, 4, 8, None]


def test_an_immediate_failure_streak_is_broken_by_a_longer_run() -> None:
    delays = _delays([0.5, 0.5, 0.5, 0.5, 20, 0.5, 0.5])
    assert None not in delays


def _wait_for(condition: Callable[[], object], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_killed_child_is_restarted_and_a_stopped_one_is_not(tmp_path: Path) -> None:
    sleeper = ProcessSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], port=0)
    platform = Platform([sleeper], log_dir=tmp_path)
    messages: list[str] = []
    status = tmp_path / "platform.json"
    supervisor = Supervisor(platform, RestartPolicy(initial_s=0.2), status_file=status, say=messages.append)
    platform.start_all()
    try:
        first = platform.running["sleeper"].popen.pid
        os.kill(first, signal.SIGKILL)  # a crash, behind the launcher's back

        def restarted() -> bool:
            supervisor.poll()
            running = platform.running["sleeper"]
            return running.popen.pid != first and running.popen.poll() is None

        _wait_for(restarted)
        assert supervisor.restarts == {"sleeper": 1}
        assert "restarting in 0.2s" in messages[0]
        assert '"restarts": 1' in status.read_text()

        platform.stop("sleeper")  # deliberate: never undone
        supervisor.poll()
        time.sleep(0.4)
        supervisor.poll()
        assert "sleeper" not in platform.running
    finally:
        platform.stop_all()


def test_a_process_that_keeps_failing_at_once_is_given_up_with_a_message(tmp_path: Path) -> None:
    failing = ProcessSpec("broken", [sys.executable, "-c", "raise SystemExit(3)"], port=0)
    platform = Platform([failing], log_dir=tmp_path)
    messages: list[str] = []
    policy = RestartPolicy(initial_s=0.05, max_s=0.05, max_immediate_failures=3)
    supervisor = Supervisor(platform, policy, say=messages.append)
    platform.start_all()
    try:

        def given_up() -> bool:
            supervisor.poll()
            return "broken" in supervisor.given_up

        _wait_for(given_up)
        assert supervisor.restarts == {"broken": 2}
        assert supervisor.given_up == {"broken": 3}
        assert "not restarting it" in messages[-1] and "exit code 3" in messages[-1]
    finally:
        platform.stop_all()


@pytest.mark.timeout(90)
def test_the_real_gateway_process_comes_back_after_a_kill(tmp_path: Path) -> None:
    """The platform's own gateway process (it needs no broker or database to be live) under supervision."""
    offset = 31000  # beside make run, the e2e platform (10000) and chaos (20000)
    spec = next(s for s in platform_processes(port_offset=offset) if s.name == "gateway")
    platform = Platform([spec], log_dir=tmp_path, base_env={**os.environ, "CRM_STATE_DIR": str(tmp_path)})
    supervisor = Supervisor(platform, RestartPolicy(initial_s=0.2))
    live = f"http://127.0.0.1:{spec.port}/health/live"

    def answers() -> bool:
        supervisor.poll()
        try:
            return httpx.get(live, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    platform.start_all()
    try:
        _wait_for(answers, 60)
        first = platform.running["gateway"].popen.pid
        os.kill(first, signal.SIGKILL)
        _wait_for(lambda: platform.running["gateway"].popen.poll() is not None)
        _wait_for(answers, 60)
        assert platform.running["gateway"].popen.pid != first
        assert supervisor.restarts == {"gateway": 1}
    finally:
        platform.stop_all()
