"""The outbox relay's rounds on a SQLite file, as the embedded default runs them: CPU per round.

    .venv/bin/python -m bench.relay_rounds [--rounds 2000] [--rows 2] [--blocks 6]

A relay (servicekit.outbox.relay) on a SQLite file of the embedded default (inline connections), with a
stand-in producer that acknowledges at once; before each round `--rows` outbox rows are committed (not
measured). Each round is what the relay's loop does under load: the mark of the last round's rows riding
on the read of the next batch, the sends. Blocks alternate between the relay's paths: ``inline`` (the read
and mark on the sqlite3 connection, servicekit.outbox.relay_sqlite) and ``sqlalchemy`` (the same statements
through SQLAlchemy's execution). Reported: this process's CPU per round (time.process_time, so it holds on
a loaded machine) and statements per round, by path, for each block and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event, insert

from servicekit.db import Database
from servicekit.outbox.relay import OutboxRelay
from servicekit.settings import ServiceSettings
from servicekit.tables import OUTBOX, add_plumbing_tables


class _Producer:
    async def send(self, topic: str, *, value: bytes, key: bytes | None, headers: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _rows(count: int, start: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "topic": "crm.interaction.v1",
            "key": f"c{(start + n) % 1000:04d}",
            "payload": b"x" * 700,
            "headers": [["ce_type", "interaction.recorded"], ["ce_id", f"e-{start + n}"]],
            "event_id": f"e-{start + n}",
            "created_at": now,
        }
        for n in range(count)
    ]


async def block(relay: OutboxRelay, rounds: int, rows: int, counter: list[int]) -> tuple[float, float]:
    """CPU ms and statements per round for `rounds` rounds."""
    database, producer = relay.database, _Producer()
    spent, statements = 0.0, 0
    for n in range(rounds):
        async with database.engine.begin() as conn:
            await conn.execute(insert(OUTBOX), _rows(rows, n * rows))
        before, sent = time.process_time(), counter[0]
        published = await relay.publish_batch(producer, defer_mark=True, hold_mark=True)
        spent += time.process_time() - before
        statements += counter[0] - sent
        assert published == rows, published
    await relay.mark_acked()
    return spent * 1000 / rounds, statements / rounds


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    database = Database(f"sqlite+aiosqlite:///{folder / 'relay.db'}")
    async with database.engine.begin() as conn:
        metadata = MetaData()
        add_plumbing_tables(metadata)
        await conn.run_sync(metadata.create_all)
    counter = [0]

    def count(*_: Any) -> None:
        counter[0] += 1

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    relay = OutboxRelay(database, ServiceSettings(name="bench", database_url=database.url))
    inline = relay._inline
    if inline is None:
        raise SystemExit("the relay did not choose the inline path on this file")
    results: dict[str, list[tuple[float, float]]] = {"inline": [], "sqlalchemy": []}
    try:
        await block(relay, args.rounds // 4, args.rows, counter)  # warm both paths
        relay._inline = None
        await block(relay, args.rounds // 4, args.rows, counter)
        for n in range(args.blocks):
            for path in ("inline", "sqlalchemy") if n % 2 == 0 else ("sqlalchemy", "inline"):
                relay._inline = inline if path == "inline" else None
                results[path].append(await block(relay, args.rounds, args.rows, counter))
    finally:
        await database.dispose()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_rounds", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="rounds per block")
    parser.add_argument("--rows", type=int, default=2, help="outbox rows committed before each round")
    parser.add_argument("--blocks", type=int, default=6, help="blocks per path, alternated")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(run(args, Path(folder)))
    print(f"relay rounds on a SQLite file, {args.rows} rows each, {args.rounds} rounds a block")
    print("| path | CPU ms per round, each block | median | statements per round |\n|---|---|---:|---:|")
    for path, blocks in results.items():
        cells = ", ".join(f"{ms:.3f}" for ms, _ in blocks)
        print(f"| {path} | {cells} | {statistics.median(ms for ms, _ in blocks):.3f} | {blocks[0][1]:.2f} |")
    ratio = statistics.median(m for m, _ in results["inline"]) / statistics.median(m for m, _ in results["sqlalchemy"])
    print(f"inline / sqlalchemy, medians: {ratio:.2f}")


if __name__ == "__main__":
    main()
