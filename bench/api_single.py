"""One POST /interactions against its floor, with and without the direct route: ``python -m bench.api_single``.

Starts a private PostgreSQL (bench.infra: its own port and state directory, no broker), creates the
interaction service's schema and 1,000 known customers, then in this one process drives, alternately in
blocks of ``--block`` posts (``--blocks`` each, so every arrangement meets the same load):

* ``direct``: the service app as it runs (servicekit.direct: the plain case skips FastAPI's routing and
  dependency solving; servicekit.driver: its common case's one statement runs on the asyncpg connection);
* ``session``: the same app with the statement run through the ORM session (as before servicekit.driver);
* ``framework``: the app with the direct route left out (every request through FastAPI's router) and the
  statement through the session: the path before either change;
* ``floor``: bench.floor's bare FastAPI route validating the same body plus one prepared asyncpg INSERT.

Requests go straight into the ASGI apps, signed as the gateway signs (bench.write_path.call): no HTTP
server. Prints, per arrangement, this process's CPU ms per post (the median over the blocks),
the fastest block's (the one least disturbed by other work on the machine), PostgreSQL's (its postmaster
and backends; the mean over the blocks, as its clock counts in 10 ms ticks), the ratios of the process's
CPU to the floor's (median to median, fastest to fastest, and the median of each round's ratio), and the
statements per post (counted in a pass of their own after the timed blocks: a listener on the engine
makes the driver fire statement events, which the timed blocks leave out, as production does).
``--profile FILE`` then runs as many more blocks of ``direct`` under cProfile and writes their stats to FILE
(read them with ``python -m pstats FILE``), printing the top functions by own time.
``--pg-port`` (default 55631) and the state directory .state/bench-api-single keep it apart from other
runs; two copies must not run at once.

``--sqlite``: the same on SQLite files as the embedded default runs them (no PostgreSQL; the files in
.state/bench-api-single-sqlite, made afresh). ``direct``'s common case then runs on the inline sqlite3
connection (servicekit.sqlite_statements), ``session`` through the ORM session, and the floor is one
bare INSERT .. RETURNING on a sqlite3 connection set up as the platform's (WAL, synchronous NORMAL), in
autocommit. Every SQLite call runs in this process, so its CPU is in the process's column.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import os
import pstats
import shutil
import sqlite3
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event, insert

import services.interaction.interactions.router as interaction_router
from bench.floor import bare_fastapi
from bench.infra import Infra, cpu_seconds, postgres_pids
from bench.write_path import CUSTOMERS, call, interaction
from servicekit import service
from servicekit.service import API, create_app
from servicekit.settings import REPO_ROOT
from services.interaction.main import SPEC
from services.interaction.models import metadata
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import InteractionSettings

INFRA = Infra(REPO_ROOT / ".state" / "bench-api-single", kafka_port=19612, pg_port=55631, port_offset=24500)
SQLITE_DIR = REPO_ROOT / ".state" / "bench-api-single-sqlite"
ARRANGEMENTS = ("direct", "session", "framework", "floor")


def database_url(sqlite: bool) -> str:
    return f"sqlite+aiosqlite:///{SQLITE_DIR / 'interaction.db'}" if sqlite else INFRA.database_url("interaction")


def service_app(direct: bool, sqlite: bool = False) -> Any:
    # Run-time settings cached for the whole run: no arrangement reads them again mid-run.
    settings = InteractionSettings(database_url=database_url(sqlite), runtime_settings_cache_s=300)
    if direct:
        return create_app(SPEC, settings, roles=(API,))
    install = service.install_direct_routes
    service.install_direct_routes = lambda _app: None  # type: ignore[assignment]
    try:
        return create_app(SPEC, settings, roles=(API,))
    finally:
        service.install_direct_routes = install


@contextlib.contextmanager
def statement_path(arrangement: str) -> Iterator[None]:
    """The session's path for the arrangements measured without servicekit.driver."""
    saved = interaction_router.usable
    if arrangement in ("session", "framework"):
        interaction_router.usable = lambda _engine: False  # type: ignore[assignment]
    try:
        yield
    finally:
        interaction_router.usable = saved  # type: ignore[assignment]


def postgres_cpu(sqlite: bool = False) -> float:
    if sqlite:
        return 0.0  # SQLite runs in this process
    pids = postgres_pids(INFRA.state_dir)
    return sum(cpu_seconds(p, reaped_children=True) for p in pids[:1]) + sum(cpu_seconds(p) for p in pids[1:])


def sqlite_floor() -> Any:
    """The floor's statement on SQLite: one INSERT .. RETURNING in autocommit on a connection set up as the
    platform's (servicekit.sqlite's pragmas that bear on a write)."""
    connection = sqlite3.connect(SQLITE_DIR / "floor.db", isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-16384", "temp_store=MEMORY"):
        connection.execute(f"PRAGMA {pragma}")
    connection.execute("CREATE TABLE IF NOT EXISTS floor_rows (id text PRIMARY KEY, body text NOT NULL)")

    async def insert_row(id_: str, body: str) -> Any:
        return connection.execute(
            "INSERT INTO floor_rows (id, body) VALUES (?, ?) RETURNING id", (id_, body)
        ).fetchall()

    return insert_row


async def run(blocks: int, size: int, profile: str | None = None, sqlite: bool = False) -> dict[str, dict[str, float]]:
    apps = {"direct": service_app(True, sqlite), "framework": service_app(False, sqlite)}
    apps["session"] = apps["direct"]
    database = apps["direct"].state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        now = datetime.now(UTC)
        rows = [{"customer_id": f"c-{i}", "version": 1, "erased": False, "updated_at": now} for i in range(CUSTOMERS)]
        await conn.execute(insert(KnownCustomer.__table__), rows)  # type: ignore[attr-defined]
    bare = bare_fastapi()
    connection: Any = None
    if sqlite:
        floor_insert = sqlite_floor()
    else:
        connection = await asyncpg.connect(INFRA.database_url("interaction", driver="postgresql"))
        await connection.execute("CREATE TABLE IF NOT EXISTS floor_rows (id text PRIMARY KEY, body jsonb NOT NULL)")
        floor_insert = (
            await connection.prepare("INSERT INTO floor_rows (id, body) VALUES ($1, $2) RETURNING id")
        ).fetchval
    sent = 0

    async def block(arrangement: str) -> tuple[float, float]:
        nonlocal sent
        bodies = [orjson.dumps(interaction(f"c-{(sent + i) % CUSTOMERS}", sent + i)) for i in range(size)]
        sent += size
        with statement_path(arrangement):
            started, postgres = time.process_time(), postgres_cpu(sqlite)
            for body in bodies:
                if arrangement == "floor":
                    status, answer = await call(bare, "/interactions", body)
                    await floor_insert(str(uuid.uuid4()), body.decode())
                else:
                    status, answer = await call(apps[arrangement], "/interactions", body)
                assert status == 201, answer
            return (time.process_time() - started) * 1000 / size, (postgres_cpu(sqlite) - postgres) * 1000 / size

    cpu: dict[str, list[float]] = {name: [] for name in ARRANGEMENTS}
    server: dict[str, list[float]] = {name: [] for name in ARRANGEMENTS}
    statements: dict[str, float] = {"floor": 1.0}  # one prepared INSERT by construction
    direct, framework = apps["direct"], apps["framework"]
    async with direct.router.lifespan_context(direct), framework.router.lifespan_context(framework):
        for name in ARRANGEMENTS:  # warm: statements prepared, caches filled
            await block(name)
        for _ in range(blocks):
            for name in ARRANGEMENTS:
                process, postgres = await block(name)
                cpu[name].append(process)
                server[name].append(postgres)
        for name in ARRANGEMENTS[:-1]:
            seen: list[str] = []

            def count(_conn: Any, _cursor: Any, statement: str, *_: Any, seen: list[str] = seen) -> None:
                seen.append(statement)

            engine = apps[name].state.database.engine.sync_engine
            event.listen(engine, "before_cursor_execute", count)
            try:
                await block(name)
            finally:
                event.remove(engine, "before_cursor_execute", count)
            statements[name] = len(seen) / size
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(blocks):
                await block("direct")
            profiler.disable()
            profiler.dump_stats(profile)
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    if connection is not None:
        await connection.close()
    for app in (direct, framework):
        await app.state.database.dispose()
    return {
        name: {
            "cpu": statistics.median(cpu[name]),
            "fastest": min(cpu[name]),  # the block least disturbed by other work on the machine
            # Each round's block against the floor's block of the same round (run next to it): the
            # median of these ratios follows the machine's load least.
            "paired": statistics.median(c / f for c, f in zip(cpu[name], cpu["floor"], strict=True)),
            "postgres": statistics.mean(server[name]),  # its clock ticks in 10 ms: the mean of the blocks
            "statements": statements[name],
        }
        for name in ARRANGEMENTS
    }


SQLITE_NOTE = "SQLite (in this process; statements: those SQLAlchemy fires events for, COMMIT is not one)"


def main() -> None:
    global INFRA
    parser = argparse.ArgumentParser(prog="python -m bench.api_single", description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20, help="blocks per arrangement")
    parser.add_argument("--block", type=int, default=100, help="posts per block")
    parser.add_argument("--profile", metavar="FILE", help="profile as many blocks of direct, stats to FILE")
    parser.add_argument("--pg-port", type=int, default=INFRA.pg_port, help="the private PostgreSQL's port")
    parser.add_argument("--sqlite", action="store_true", help="SQLite files as the embedded default, no PostgreSQL")
    args = parser.parse_args()
    INFRA = dataclasses.replace(INFRA, pg_port=args.pg_port)
    if args.sqlite:
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)
        SQLITE_DIR.mkdir(parents=True)
    with contextlib.nullcontext() if args.sqlite else INFRA.postgres():
        load_before = os.getloadavg()[0]
        result = asyncio.run(run(args.blocks, args.block, args.profile, args.sqlite))
    print(
        f"\nload average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {args.blocks} blocks of {args.block}"
        f"; {SQLITE_NOTE if args.sqlite else 'PostgreSQL'}"
    )
    print(
        "| arrangement | process CPU ms / post | ÷ floor | fastest block | ÷ floor's fastest | ÷ floor, by round"
        " | PostgreSQL CPU ms / post | statements / post |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    floor, fastest = result["floor"]["cpu"], result["floor"]["fastest"]
    for name in ARRANGEMENTS:
        figures = result[name]
        print(
            f"| {name} | {figures['cpu']:.3f} | {figures['cpu'] / floor:.2f} | {figures['fastest']:.3f}"
            f" | {figures['fastest'] / fastest:.2f} | {figures['paired']:.2f}"
            f" | {'n/a' if args.sqlite else format(figures['postgres'], '.3f')}"
            f" | {figures['statements']:.2f} |"
        )


if __name__ == "__main__":
    main()
