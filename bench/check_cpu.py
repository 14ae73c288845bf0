"""Where the unit tests' CPU goes: `python -m bench.check_cpu [pytest args, default: tests/unit -n 2]`.

Runs the unit tests as `make unit` does (two pytest-xdist workers unless told otherwise) with this module
loaded as a pytest plugin in every worker, then prints CPU seconds (user + sys; they hold on a shared,
loaded box where wall time does not): the whole run, each worker's collection and tests, the processes
the tests started, the costliest test files and fixture set-ups, and a few known hot spots (FastAPI's
per-app route set-up, settings objects, SSL contexts, create_all). docs/performance/2026-12-07-check-3.md
is a run of it.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

OUT_ENV = "CHECK_CPU_OUT"

_started = time.process_time()
_collected = 0.0
_files: dict[str, float] = defaultdict(float)
_fixtures: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
_spots: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])


def _timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    busy = False

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal busy
        if busy:  # count the outermost call only
            return function(*args, **kwargs)
        busy, start = True, time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            busy = False
            spot = _spots[label]
            spot[0] += time.process_time() - start
            spot[1] += 1

    return wrapper


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(OUT_ENV):
        return
    import fastapi.routing
    import pydantic_settings
    from sqlalchemy import MetaData

    routing: Any = fastapi.routing
    routing._populate_api_route_state = _timed(
        "FastAPI route set-up (per app, on its first requests)", routing._populate_api_route_state
    )
    settings: Any = pydantic_settings.BaseSettings
    settings.__init__ = _timed("settings objects (pydantic-settings)", settings.__init__)
    ssl.create_default_context = _timed("SSL contexts (ssl.create_default_context)", ssl.create_default_context)
    metadata: Any = MetaData
    metadata.create_all = _timed("MetaData.create_all", metadata.create_all)


def pytest_collection_finish(session: pytest.Session) -> None:
    global _collected
    _collected = time.process_time() - _started


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Iterator[None]:
    start = time.process_time()
    yield
    entry = _fixtures[f"{fixturedef.baseid.split('::')[0] or '(pytest)'}::{fixturedef.argname}"]
    entry[0] += time.process_time() - start
    entry[1] += 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    start = time.process_time()
    yield
    _files[item.nodeid.split("::")[0]] += time.process_time() - start


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get(OUT_ENV)
    if not out or not _files:
        return
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {
        "process": time.process_time() - _started,
        "collection": _collected,
        "tests": sum(_files.values()),
        "children": children.ru_utime + children.ru_stime,
        "files": _files,
        "fixtures": _fixtures,
        "spots": _spots,
    }
    (Path(out) / f"worker-{os.getpid()}.json").write_text(json.dumps(report))


def _print_top(title: str, rows: dict[str, Any], count: int) -> None:
    print(f"\n{title}")
    for name, value in sorted(rows.items(), key=lambda row: -row[1][0])[:count]:
        print(f"  {value[0]:7.2f} s  {value[1]:5d}  {name}")


def main(argv: list[str]) -> int:
    args = argv or ["tests/unit", "-n", "2"]
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, OUT_ENV: out}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as make unit runs them
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:schemathesis"]
        command += ["-p", "no:hypothesispytest", "-p", "bench.check_cpu", *args]
        load = os.getloadavg()[0]
        start = time.monotonic()
        code = subprocess.run(command, env=env, check=False).returncode
        wall = time.monotonic() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        workers = [json.loads(path.read_text()) for path in sorted(Path(out).glob("worker-*.json"))]
    cpu = usage.ru_utime + usage.ru_stime
    print(f"\nexit {code}; wall {wall:.1f} s; CPU {cpu:.1f} s (user {usage.ru_utime:.1f}, sys {usage.ru_stime:.1f})")
    print(f"load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"quiet 2-core estimate: CPU / 2 = {cpu / 2:.0f} s, plus what the busier worker waits and sleeps")
    for n, worker in enumerate(workers):
        print(
            f"worker {n}: process {worker['process']:.1f} s = collection {worker['collection']:.1f} + tests "
            f"{worker['tests']:.1f} (+ rest); processes its tests started {worker['children']:.1f} s"
        )
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    fixtures: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    spots: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for worker in workers:
        for name, seconds in worker["files"].items():
            files[name][0] += seconds
            files[name][1] += 1
        for table, rows in ((fixtures, worker["fixtures"]), (spots, worker["spots"])):
            for name, (seconds, calls) in rows.items():
                table[name][0] += seconds
                table[name][1] += calls
    _print_top("test files (CPU s, workers that ran some)", files, 15)
    _print_top("fixture set-ups (CPU s, set-ups)", fixtures, 15)
    _print_top("hot spots (CPU s, calls)", spots, 10)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
