"""The bulk import's INSERT of interactions on PostgreSQL, two ways: ``python -m bench.bulk_insert``.

Starts a private PostgreSQL (bench.infra; CRM_TEST_STATE_DIR and CRM_TEST_PG_PORT move it), creates the
interaction service's tables, builds --rows interactions as POST /interactions/bulk builds them (validated
bodies of the generated subscription data set's kinds: purchases, complaints, surveys, contacts; drafts with
ids and SLA deadlines), and inserts them in statements of --batch rows, alternating, --repeats times each:

* ``arrays``: an array per column (servicekit.sql.insert_from_arrays: SQLAlchemy's bind processor per value,
  the driver's array encoder per element), the path until this round;
* ``json``: the rows as one JSON document (servicekit.sql.insert_new_rows -> insert_from_json), the path now.

It prints, per way, CPU µs per row of this process (the service's share) and of the PostgreSQL backend that
ran the statements (its /proc CPU), and the wall µs per row (which the machine's load inflates).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

from sqlalchemy import text

from bench.infra import Infra
from servicekit.db import Database
from servicekit.settings import REPO_ROOT
from servicekit.sql import column_arrays, insert_from_arrays, insert_new_rows
from services.interaction.interactions.models import Interaction, InteractionCreate
from services.interaction.interactions.store import new_draft
from services.interaction.models import metadata

INFRA = Infra(
    Path(os.environ.get("CRM_TEST_STATE_DIR", REPO_ROOT / ".state" / "bench-bulk-insert")),
    kafka_port=0,
    pg_port=int(os.environ.get("CRM_TEST_PG_PORT", "55491")),
    port_offset=0,
)
TABLE = Interaction.__table__  # type: ignore[attr-defined]
SLA_HOURS = {"critical": 4.0, "high": 24.0, "medium": 72.0, "low": 168.0}


def bodies(count: int, seed: int = 5) -> list[dict[str, Any]]:
    """Interactions of the kinds an import carries, in the generator's proportions (mostly contacts and purchases)."""
    rng = Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for n in range(count):
        common = {
            "customer_id": f"sub-{rng.randrange(5000):07d}",
            "external_id": f"bench-{n}",
            "occurred_at": (start + timedelta(minutes=rng.randrange(500_000))).isoformat(),
        }
        roll = rng.random()
        if roll < 0.45:
            kind = {"type": rng.choice(["email", "call", "chat"]), "channel": "support"}
        elif roll < 0.9:
            kind = {"type": "purchase", "amount": f"{rng.uniform(5, 300):.2f}", "currency": "EUR"}
        elif roll < 0.95:
            kind = {"type": "complaint", "severity": rng.choice(["low", "high"]), "category": "billing"}
        else:
            kind = {"type": "survey", "survey": "nps", "score": rng.randrange(11)}
        out.append(common | kind)
    return out


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_pass(database: Database, way: str, rows: list[dict[str, Any]], batch: int) -> dict[str, float]:
    async with database.transaction() as session:
        await session.execute(text("TRUNCATE interactions"))
    names = tuple(rows[0])
    arrays = insert_from_arrays(TABLE, names).on_conflict_do_nothing(index_elements=["external_id"])
    async with database.transaction() as session:
        pid = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        backend, cpu, wall = backend_cpu_s(pid), time.process_time(), time.perf_counter()
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            if way == "arrays":
                await session.execute(arrays.returning(TABLE.c.id), column_arrays(TABLE, names, part))
            else:
                await insert_new_rows(session, TABLE, part, skip_conflicts_on="external_id", returning="id")
        cpu, wall, backend = time.process_time() - cpu, time.perf_counter() - wall, backend_cpu_s(pid) - backend
    per = 1e6 / len(rows)
    return {"client_us": cpu * per, "backend_us": backend * per, "wall_us": wall * per}


async def run(args: argparse.Namespace) -> None:
    database = Database(INFRA.database_url("interaction"))
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    drafts = [vars(new_draft(InteractionCreate.model_validate(b), SLA_HOURS)) for b in bodies(args.rows)]
    results: dict[str, list[dict[str, float]]] = {"arrays": [], "json": []}
    try:
        for _ in range(args.repeats):
            for way in results:
                results[way].append(await one_pass(database, way, drafts, args.batch))
    finally:
        await database.dispose()
    print(f"\n{args.rows} interactions in statements of {args.batch} rows, {args.repeats} passes each, alternated;"
          f" load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| way | client CPU µs/row (median, range) | PostgreSQL backend CPU µs/row | wall µs/row |")
    print("|---|---|---|---|")
    for way, passes in results.items():
        cells = []
        for key in ("client_us", "backend_us", "wall_us"):
            values = [p[key] for p in passes]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
        print(f"| {way} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_insert", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2000, help="rows per statement (the CLI's chunk)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with INFRA.postgres():
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
