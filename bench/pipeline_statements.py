"""PostgreSQL statements per complaint in a bench.pipeline latency phase, by service database and process.

Run beside `python -m bench.pipeline ... > LOG`: it follows LOG, resets pg_stat_statements when the latency
phase starts and reads it when the phase reports, then prints calls per complaint for each statement
(grouped by database, i.e. service) and the totals. The server needs pg_stat_statements preloaded:
`--preload` sets it with ALTER SYSTEM (it takes effect at the next start of that state dir's server,
which bench.pipeline restarts).

    python -m bench.pipeline_statements --pg-port 32402 --log run.log --complaints 6000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import asyncpg

START = "latency at "
END = "alert committed p50"


async def connect(port: int) -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")


def _lines(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines() if log.exists() else []


async def wait_for_line(log: Path, marker: str, after: int) -> int:
    """The line number of the first line after `after` holding marker."""
    while True:
        lines = await asyncio.to_thread(_lines, log)
        for n, line in enumerate(lines[after:], start=after):
            if marker in line:
                return n + 1
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace) -> dict[str, object]:
    if args.preload:
        conn = await connect(args.pg_port)
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        await conn.close()
        return {"preload": "set; restart the server"}
    seen = await wait_for_line(args.log, START, 0)
    conn = await connect(args.pg_port)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await conn.execute("SELECT pg_stat_statements_reset()")
    started = time.monotonic()
    await wait_for_line(args.log, END, seen)
    rows = await conn.fetch(
        "SELECT d.datname, s.calls, s.total_exec_time, s.query FROM pg_stat_statements s "
        "JOIN pg_database d ON d.oid = s.dbid WHERE s.query NOT LIKE '%pg_stat_statements%' ORDER BY s.calls DESC"
    )
    await conn.close()
    per: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        per.setdefault(row["datname"], []).append(
            {
                "per_complaint": round(row["calls"] / args.complaints, 3),
                "server_ms_per_complaint": round(row["total_exec_time"] / args.complaints, 4),
                "query": " ".join(row["query"].split())[:240],
            }
        )
    return {"seconds": round(time.monotonic() - started, 1), "complaints": args.complaints, "databases": per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--log", type=Path, default=Path("pipeline.log"))
    parser.add_argument("--complaints", type=int, default=6000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--preload", action="store_true", help="ALTER SYSTEM to preload pg_stat_statements")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    for database, statements in sorted(report.get("databases", {}).items()):  # type: ignore[attr-defined]
        total = sum(s["per_complaint"] for s in statements)
        server = sum(s["server_ms_per_complaint"] for s in statements)
        print(f"{database}: {total:.2f} statements per complaint, {server:.3f} ms server time")
        for s in statements[: args.top]:
            print(f"  {s['per_complaint']:7.3f}  {s['server_ms_per_complaint']:.4f} ms  {s['query'][:150]}")
    if "preload" in report:
        print(report["preload"])


if __name__ == "__main__":
    main()
