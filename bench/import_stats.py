"""What an import's work came to in each store, for bench.imports: the events each consumer handled (its
inbox rows by event type) and PostgreSQL's own counters per database (transactions and rows written or
read), as differences between two snapshots. CPU per row says what a hop costs; these say why."""

from __future__ import annotations

from typing import Any

import asyncpg

SERVICES = ("customer", "interaction", "scoring", "retention")
# pg_stat_database's counters that stand for a store's work: commits and the rows written and read.
PG_COUNTERS = ("xact_commit", "tup_inserted", "tup_updated", "tup_deleted", "tup_fetched", "tup_returned")


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


async def inbox_counts(database_url: Any) -> dict[str, dict[str, int]]:
    """service -> event type -> events its consumer has handled (inbox rows)."""
    counts: dict[str, dict[str, int]] = {}
    for service in SERVICES:
        rows = await _fetch(
            database_url(service, driver="postgresql"),
            "SELECT coalesce(event_type, '?') AS t, count(*) AS n FROM inbox GROUP BY 1 ORDER BY 2 DESC",
        )
        counts[service] = {r["t"]: int(r["n"]) for r in rows}
    return counts


async def pg_counters(database_url: Any, databases: dict[str, str]) -> dict[str, dict[str, int]]:
    """database -> pg_stat_database's counters (cumulative; compare two snapshots). The statistics are
    flushed by each backend at the end of a transaction, at most every second: a snapshot lags a little.
    `databases`: service -> its database's name."""
    rows = await _fetch(
        database_url("customer", driver="postgresql"),
        f"SELECT datname, {', '.join(PG_COUNTERS)} FROM pg_stat_database",
    )
    service_of = {name: service for service, name in databases.items()}
    return {service_of[r["datname"]]: {c: int(r[c]) for c in PG_COUNTERS} for r in rows if r["datname"] in service_of}


def per_row(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], rows: int) -> dict[str, Any]:
    """Each counter's growth per row between two snapshots (3 decimals)."""
    return {
        name: {k: round((v - before.get(name, {}).get(k, 0)) / rows, 3) for k, v in counters.items()}
        for name, counters in after.items()
    }
