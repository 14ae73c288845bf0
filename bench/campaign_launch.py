"""Campaign launch benchmark: one win-back campaign launched over a large audience on PostgreSQL.

    .venv/bin/python -m bench.campaign_launch [--audience 100000] [--only one-touch|sequence] [--keep-infra]

A private PostgreSQL (its own state directory and port; no Kafka) holds retention's tables. The bench seeds
the audience into retention's customer replica (a tenth of them with a consent record, one in fifty opted
out of e-mail), an offer, and two scheduled campaigns over the same audience (holdout 10%): a one-touch
campaign, then one that runs a sequence (offer, wait, reminder) per treated member. Each launch runs
`campaigns.launch.launch_with` in one transaction, as the route and the loop do, with the audience passed
in (the segment's CSV export from the scoring service is not part of the measurement). Reported per
launch: seconds, rows written (members, touches, enrolments, outbox events) and rows per second, and the
process's resident memory before, at its peak (sampled every 20 ms during the launch) and after. With
`--only`, one launch runs in a fresh process, so its memory does not start from the other's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from bench.infra import Infra
from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.settings import REPO_ROOT
from servicekit.tables import table_of
from services.retention.campaigns import launch as campaign_launch
from services.retention.campaigns.audience import AudienceMember
from services.retention.campaigns.models import Campaign, CampaignMember, Offer
from services.retention.models import metadata
from services.retention.replica.models import Customer
from services.retention.sequences.models import Enrolment
from services.retention.touches.models import ConsentReplica, Touch

INFRA = Infra(REPO_ROOT / ".state" / "bench-campaign", kafka_port=19892, pg_port=55557, port_offset=25000)
SEQUENCE = {
    "steps": [
        {"id": "offer", "kind": "touch", "action": "win_back_offer", "template": "wb-offer"},
        {"id": "wait", "kind": "wait", "hours": 72, "until": ["purchased"]},
        {"id": "reminder", "kind": "touch", "action": "win_back_offer", "template": "wb-reminder"},
    ],
    "stop_when": {"purchased": True},
}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def seed(database: Database, n: int) -> list[AudienceMember]:
    now = utc_now()
    tiers = ("lead", "iron", "gold", "platinum")
    for start in range(0, n, 5000):
        ids = range(start, min(n, start + 5000))
        customers = [
            {
                "customer_id": f"c{i:07d}",
                "owner": f"am{i % 50}",
                "status": "churned",
                "tier": tiers[i % 4],
                "version": 1,
                "first_seen": now,
                "updated_at": now,
            }
            for i in ids
        ]
        consents = [
            {
                "customer_id": f"c{i:07d}",
                "version": 1,
                "channels": {"email": "opt_out" if i % 50 == 0 else "opt_in"},
                "timezone": None,
                "cap_max_touches": None,
                "cap_window_days": None,
                "quiet_start": None,
                "quiet_end": None,
                "updated_at": now,
            }
            for i in ids
            if i % 10 == 0
        ]
        async with database.transaction() as session:
            await session.execute(insert(table_of(Customer)), customers)
            await session.execute(insert(table_of(ConsentReplica)), consents)
        if (start // 5000) % 5 == 4 or start + 5000 >= n:
            print(f"  seeded {min(n, start + 5000):,} customers", flush=True)
    return [AudienceMember(customer_id=f"c{i:07d}", value_tier=tiers[i % 4], status="churned") for i in range(n)]


async def counts(database: Database) -> dict[str, int]:
    tables = {
        "members": table_of(CampaignMember),
        "touches": table_of(Touch),
        "enrolments": table_of(Enrolment),
        "outbox": metadata.tables["outbox"],
    }
    async with database.sessions() as session:
        return {
            name: int((await session.execute(select(func.count()).select_from(t))).scalar_one())
            for name, t in tables.items()
        }


async def launch_one(database: Database, campaign_id: str, audience: list[AudienceMember]) -> dict[str, Any]:
    before_rows = await counts(database)
    gc.collect()
    rss_before = rss_mib()
    peak = rss_before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    t0 = time.perf_counter()
    async with database.transaction() as session:
        campaign = await campaign_launch.launch_with(session=session, campaign_id=campaign_id, audience=audience)
        figures = {"treated": campaign.treated, "holdout": campaign.holdout, "reached": campaign.reached}
    elapsed = time.perf_counter() - t0
    done.set()
    await sampler
    peak = max(peak, rss_mib())
    gc.collect()
    rss_after = rss_mib()
    after_rows = await counts(database)
    written = {name: after_rows[name] - before_rows[name] for name in after_rows}
    total = sum(written.values())
    return {
        **figures,
        "seconds": round(elapsed, 2),
        "rows": written,
        "rows_total": total,
        "rows_per_s": round(total / elapsed),
        "rss_before_mib": round(rss_before, 1),
        "rss_peak_mib": round(peak, 1),
        "rss_after_mib": round(rss_after, 1),
    }


LAUNCHES = ("one-touch", "sequence")


async def run(n: int, launches: tuple[str, ...] = LAUNCHES) -> dict[str, dict[str, Any]]:
    database = Database(INFRA.database_url("retention"), source="/crm/retention")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    audience = await seed(database, n)
    now = utc_now()
    async with database.transaction() as session:
        session.add(Offer(id="offer-1", code="winback-20", name="20% off", kind="discount_percent", value=20.0))
        for campaign_id, sequence in (("one-touch", None), ("sequence", SEQUENCE)):
            session.add(
                Campaign(
                    id=campaign_id,
                    name=campaign_id,
                    offer_id="offer-1",
                    channel="email",
                    segment_id="seg",
                    holdout_share=0.1,
                    starts_at=now,
                    sequence=sequence,
                    blocked_by={},
                )
            )
    results = {}
    for campaign_id in launches:
        print(f"== launching the {campaign_id} campaign over {n:,} customers", flush=True)
        results[campaign_id] = await launch_one(database, campaign_id, audience)
        print(f"  {results[campaign_id]}", flush=True)
    await database.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audience", type=int, default=100_000)
    parser.add_argument("--only", choices=LAUNCHES, help="launch only this campaign (a fresh process's memory)")
    parser.add_argument("--keep-infra", action="store_true", help="leave PostgreSQL running afterwards")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with INFRA.postgres(keep=args.keep_infra):
        results = asyncio.run(run(args.audience, (args.only,) if args.only else LAUNCHES))
    print(f"load average after: {os.getloadavg()}")
    print("== result")
    print("| launch | treated | reached | seconds | rows written | rows/s | RSS before / peak / after MiB |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        rows = ", ".join(f"{k} {v:,}" for k, v in r["rows"].items() if v)
        print(
            f"| {name} | {r['treated']:,} | {r['reached']:,} | {r['seconds']} | {r['rows_total']:,} ({rows}) | "
            f"{r['rows_per_s']:,} | {r['rss_before_mib']} / {r['rss_peak_mib']} / {r['rss_after_mib']} |"
        )


if __name__ == "__main__":
    main()
