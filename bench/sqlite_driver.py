"""SQLite in the event loop's thread against aiosqlite's thread: ``python -m bench.sqlite_driver``.

The interaction service's API on a SQLite file in this process (as `make run` has it) takes single
POST /interactions one after another, and after every second post a relay-like transaction marks
outbox rows published (as the relay in the same process does). Two arrangements, alternated
``--rounds`` times, each on a fresh file: ``inline`` (servicekit.sqlite_driver: every call in the loop's
thread, as the platform runs now) and ``thread`` (aiosqlite: every cursor, execute, fetch and COMMIT a job
for the connection's own thread and a wake-up of the loop for its answer). Prints this process's CPU per
post (time.process_time: every thread's, so it holds on a loaded machine) and the wall time per post.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert

from bench.sqlite_queue import CUSTOMERS, MARK, make_app
from bench.write_path import call, interaction
from servicekit import db
from services.interaction.models import metadata
from services.interaction.replica.models import KnownCustomer

INLINE = db.engine_options


async def one_round(inline: bool, posts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        return await _measure(Path(folder) / "interaction.db", inline, posts)


async def _measure(path: Path, inline: bool, posts: int) -> dict[str, Any]:
    db.engine_options = INLINE if inline else (lambda _url: {})  # type: ignore[assignment]
    try:
        app = make_app(path, queue=True)
    finally:
        db.engine_options = INLINE
    database = app.state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        now = datetime.now(UTC)
        rows = [{"customer_id": f"c-{i}", "version": 1, "erased": False, "updated_at": now} for i in range(CUSTOMERS)]
        await conn.execute(insert(KnownCustomer.__table__), rows)  # type: ignore[attr-defined]
    async with app.router.lifespan_context(app):
        for n in range(100):  # warm-up: compiled statements, pool
            await call(app, "/interactions", orjson.dumps(interaction(f"c-{n % CUSTOMERS}", n)))
        cpu, wall = time.process_time(), time.monotonic()
        for n in range(posts):
            status, body = await call(app, "/interactions", orjson.dumps(interaction(f"c-{n % CUSTOMERS}", n + 100)))
            assert status == 201, body
            if n % 2 == 0:
                async with database.autocommit() as conn:
                    await conn.execute(MARK)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    await database.dispose()
    return {
        "arrangement": "inline" if inline else "thread",
        "cpu_ms_per_post": round(cpu * 1000 / posts, 3),
        "wall_ms_per_post": round(wall * 1000 / posts, 2),
        "load": round(os.getloadavg()[0], 1),
    }


async def main_async(args: argparse.Namespace) -> None:
    print("| round | arrangement | CPU ms per post | wall ms per post | load (1 min) |\n|---|---|---:|---:|---:|")
    for n in range(1, args.rounds + 1):
        for inline in (False, True):
            r = await one_round(inline, args.posts)
            print(
                f"| {n} | {r['arrangement']} | {r['cpu_ms_per_post']} | {r['wall_ms_per_post']} | {r['load']} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite_driver", description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=600, help="posts measured per round")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of rounds (thread, then inline)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
