"""A consumer's heap trimming: paced by its interval, off at 0, off for good where glibc is missing; the
launcher gives the chosen allocator only to processes that consume; a pool's connections name their process
(pg_stat_activity.application_name, which the memory soak groups PostgreSQL's backends by)."""

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from runner.launcher import allocator_env
from servicekit.allocator import TrimPacer, trim_heap
from servicekit.db import Database
from servicekit.settings import PlatformSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_trim_runs_at_most_once_per_interval() -> None:
    clock, ran = Clock(), []
    pacer = TrimPacer(30.0, clock)
    assert not pacer.after_batch(lambda: ran.append(1) or True)  # not due yet: one interval after start
    clock.now += 30.0
    assert pacer.after_batch(lambda: ran.append(1) or True)
    clock.now += 29.0
    assert not pacer.after_batch(lambda: ran.append(1) or True)
    clock.now += 1.0
    assert pacer.after_batch(lambda: ran.append(1) or True)
    assert (ran, pacer.trims) == ([1, 1], 2)


def test_an_interval_of_zero_never_trims() -> None:
    clock = Clock()
    pacer = TrimPacer(0.0, clock)
    clock.now += 1e6
    assert not pacer.due()
    assert not pacer.after_batch(lambda: pytest.fail("trimmed with trimming off"))


def test_without_malloc_trim_the_pacer_stops_asking() -> None:
    clock, asked = Clock(), []
    pacer = TrimPacer(1.0, clock)
    clock.now += 1.0
    assert not pacer.after_batch(lambda: asked.append(1) or False)
    clock.now += 100.0
    assert not pacer.due()
    assert (asked, pacer.trims) == ([1], 0)


def test_trim_heap_calls_glibc_on_this_linux() -> None:
    assert trim_heap() is True


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ("consume", {"PYTHONMALLOC": "malloc"}),
        ("all", {"PYTHONMALLOC": "malloc"}),
        ("api, consume", {"PYTHONMALLOC": "malloc"}),
        ("api", {}),
        ("relay", {}),
        ("api,relay", {}),
    ],
)
def test_the_allocator_goes_to_processes_that_consume(roles: str, expected: dict[str, str]) -> None:
    assert allocator_env(roles, PlatformSettings(consumer_pythonmalloc="malloc")) == expected


def test_no_allocator_setting_leaves_pythons_default() -> None:
    assert allocator_env("consume", PlatformSettings(consumer_pythonmalloc="")) == {}


def test_a_postgres_pool_names_its_process_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import servicekit.db

    seen: dict[str, Any] = {}

    def engine(url: str, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return create_async_engine(url, **kwargs)

    monkeypatch.setattr(servicekit.db, "create_async_engine", engine)
    database = Database("postgresql+asyncpg://crm@127.0.0.1:1/interaction", application_name="interaction api")
    assert seen["connect_args"] == {"server_settings": {"application_name": "interaction api"}}
    assert database.application_name == "interaction api"
