"""Sequence engine benchmark: N enrolments whose next step falls due in the same minute, processed by the
engine's own rounds (services/retention/sequences/engine.py), with memory measured around them.

    .venv/bin/python -m bench.sequences [--steps 100000] [--batch 200] [--database-url URL]

Each enrolment is a small-customer automated win-back: one `touch` step (win_back_offer by e-mail) through
the consent gate, its touch row, its `touch.requested` event in the outbox, then a 7-day wait (the next
timer). The enrolments are written first; then RSS is read, the engine runs until nothing is due, and
RSS is sampled after every batch. Reported: RSS before and after, the peak during the run and its rise
over the start, batches, steps per second, and that every step ran once (touch and outbox counts).
SQLite in a temporary directory by default; --database-url (postgresql+asyncpg://...) for a server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.tables import table_of
from services.retention.db import new_id
from services.retention.models import metadata
from services.retention.sequences import engine as sequence_engine
from services.retention.sequences.core import SequenceDef
from services.retention.sequences.models import Enrolment, EnrolmentStatus
from services.retention.touches.models import Touch

DEFINITION = SequenceDef.model_validate(
    {
        "steps": [
            {"id": "offer", "kind": "touch", "action": "win_back_offer", "template": "win-back-15"},
            {"id": "wait", "kind": "wait", "hours": 168},
            {"id": "reminder", "kind": "touch", "action": "win_back_offer", "template": "win-back-reminder"},
        ]
    }
).model_dump(mode="json", by_alias=True)


def rss_mib() -> float:
    """Resident set size now (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def seed(database: Database, n: int, due: object) -> None:
    table = table_of(Enrolment)
    chunk = 5000
    for start in range(0, n, chunk):
        rows = [
            {
                "id": new_id(),
                "customer_id": f"c{i:06d}",
                "alert_id": None,
                "reason": "churned",
                "tier": "lead",
                "owner": None,
                "definition": DEFINITION,
                "status": EnrolmentStatus.active.value,
                "cursor": 0,
                "due_at": due,
                "version": 0,
                "steps_run": 0,
                "trail": [],
                "active_slot": f"c{i:06d}:churned",
                "started_at": due,
                "updated_at": due,
            }
            for i in range(start, min(n, start + chunk))
        ]
        async with database.transaction() as session:
            await session.execute(insert(table), rows)
        print(f"  seeded {min(n, start + chunk):,} enrolments", flush=True)


async def main(steps: int, batch: int, url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(url or f"sqlite+aiosqlite:///{Path(tmp) / 'retention.db'}", source="/crm/retention")
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        due = utc_now().replace(second=0, microsecond=0)
        await seed(database, steps, due)
        gc.collect()
        before = rss_mib()
        print(f"== {steps:,} steps due at {due:%H:%M}; batch {batch}; RSS before {before:.1f} MiB", flush=True)
        stats = sequence_engine.RoundStats()
        peak = before
        t0 = time.perf_counter()
        now = due + timedelta(seconds=30)
        while True:
            async with database.transaction() as session:
                ran = await sequence_engine.run_batch(session, now=now, limit=batch, stats=stats)
            peak = max(peak, rss_mib())
            if stats.batches % 50 == 0 and ran:
                rate = stats.claimed / (time.perf_counter() - t0)
                print(
                    f"  {stats.claimed:,} steps, {stats.batches} batches, {rate:,.0f}/s, RSS {rss_mib():.1f} MiB",
                    flush=True,
                )
            if ran == 0:
                break
        elapsed = time.perf_counter() - t0
        gc.collect()
        after = rss_mib()
        async with database.sessions() as session:
            touches = (await session.execute(select(func.count()).select_from(Touch))).scalar_one()
            outbox = (await session.execute(select(func.count()).select_from(metadata.tables["outbox"]))).scalar_one()
            waiting = (
                await session.execute(select(func.count()).select_from(Enrolment).where(Enrolment.cursor == 1))
            ).scalar_one()
        await database.dispose()
    print("== result")
    print(f"steps run            {stats.claimed:,} in {stats.batches:,} batches of up to {batch}")
    print(f"wall time            {elapsed:.1f} s ({stats.claimed / elapsed:,.0f} steps/s)")
    print(f"RSS before / after   {before:.1f} / {after:.1f} MiB")
    print(f"RSS peak during run  {peak:.1f} MiB (+{peak - before:.1f} MiB over the start)")
    print(f"touches / outbox     {touches:,} / {outbox:,}; waiting on the next timer {waiting:,}")
    assert stats.claimed == steps == touches == outbox == waiting, "every step must run exactly once"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.batch, args.database_url))
