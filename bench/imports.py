"""Importing a company's history with `crm import`, on PostgreSQL: ``python -m bench.imports`` (`make bench-import`).

Starts a private Kafka + PostgreSQL and the platform on them (bench.infra, one process per service by
default, as `make run`), generates a subscription data set (`crm generate subscriptions`: N customers and
about ten interactions each, with churn statuses), then imports it through the gateway exactly as an
operator would: `crm import customers`, `crm import interactions` (by the customers' references) and
`crm import statuses`, each as its own process. It reports:

- rows/s of each import (rows in the file / wall time of the command, reading and checking included);
- the time from the end of the interactions import until every customer has a score in the scoring
  service (polled in its store every half second);
- the time from the end of the customers import until the interaction service's replica of the
  customers (filled from their events) holds every one;
- the time from the end of the interactions import until the pipeline is drained (no outbox row
  unpublished, no consumer group behind), and the CPU of every process per interaction up to then;
- the rows in each store at the end (customers, status changes, interactions, scores, retention's
  replica), next to what the files hold: nothing lost, nothing twice.

Defaults fit a small machine in a few minutes; `--customers 100000 --interactions 1000000` gives the
migration-sized run of issue 27 (the generator makes about eight interactions per customer; --interactions
pads the histories with support contacts to exactly that many). One run prints one report and writes it as JSON to
.state/bench-import/imports.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import import_stats
from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.import_churn import KEEP_ATTRIBUTES_ENV, churn_on_import, train_churn
from bench.infra import LAYOUTS, Infra, report_start, run_on_fresh_infra, start_in_order, write_report
from bench.pipeline import Backlog, cpu_snapshot, watched_processes
from cli.generate import AS_OF
from cli.generate import write as generate
from runner.launcher import ProcessSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
# Fixed ports by default (hold /tmp/crm-e2e.lock); CRM_TEST_* give a long run its own ports and state dir.
INFRA = Infra(
    Path(os.environ.get("CRM_TEST_STATE_DIR", REPO_ROOT / ".state" / "bench-import")),
    kafka_port=int(os.environ.get("CRM_TEST_KAFKA_PORT", "19492")),
    kafka_controller_port=int(os.environ["CRM_TEST_KAFKA_CONTROLLER_PORT"])
    if "CRM_TEST_KAFKA_CONTROLLER_PORT" in os.environ
    else None,
    pg_port=int(os.environ.get("CRM_TEST_PG_PORT", "55483")),
    port_offset=int(os.environ.get("CRM_TEST_PORT_OFFSET", "23000")),
)
SCORE_TIMEOUT_S = 1800
REPLICA_WAIT_S = 120  # after every customer is scored
KNOWN = "SELECT count(*) FROM known_customers"  # the interaction service's replica of the customers


class ImportBacklog(Backlog):
    """The drain watcher for an import: an unbounded count of a million unpublished rows, four times a
    second, would take PostgreSQL's CPU from the platform it measures; whether the outbox is empty is
    all the drain needs (up to 10,000 rows are counted)."""

    outbox_sql = "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 10000) AS waiting"
    poll_s = 1.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rows_in(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as stream:
        return sum(1 for _ in csv.reader(stream)) - 1


def crm_import(kind: str, data: Path, chunk_size: int) -> dict[str, Any]:
    """One `crm import` run as a separate process, as an operator starts it."""
    token = bearer_headers(role="admin", sub="bench-import")["Authorization"].removeprefix("Bearer ")
    command = [
        sys.executable, "-m", "cli", "--gateway", INFRA.gateway, "import", kind, str(data / f"{kind}.csv"),
        "--mapping", str(data / f"{kind}.yaml"), "--chunk-size", str(chunk_size), "--restart",
    ]  # fmt: skip
    env = {**os.environ, "CRM_API_TOKEN": token, "PYTHONPATH": str(REPO_ROOT)}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    rows = rows_in(data / f"{kind}.csv")
    summary = done.stdout.strip().splitlines()[:6]
    log(f"  {kind}: {rows} rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s; {summary[0] if summary else ''}")
    if done.returncode != 0:
        log(done.stdout[-2000:] + done.stderr[-2000:])
    return {"rows": rows, "seconds": round(elapsed, 2), "rows_per_s": round(rows / elapsed, 1),
            "exit_code": done.returncode, "summary": summary}  # fmt: skip


async def count(service: str, sql: str) -> int:
    connection = await asyncpg.connect(INFRA.database_url(service, driver="postgresql"))
    try:
        return int(await connection.fetchval(sql))
    finally:
        await connection.close()


async def store_counts() -> dict[str, int]:
    return {
        "customer.customers": await count("customer", "SELECT count(*) FROM customers"),
        "customer.churned": await count("customer", "SELECT count(*) FROM customers WHERE status = 'churned'"),
        "interaction.interactions": await count("interaction", "SELECT count(*) FROM interactions"),
        # The interaction service's replica of the customers (filled from customer events; it converges).
        "interaction.known_customers": await count("interaction", "SELECT count(*) FROM known_customers"),
        "scoring.current_scores": await count("scoring", "SELECT count(*) FROM current_scores"),
        "retention.customers": await count("retention", "SELECT count(*) FROM customers"),
    }


async def wait_for_count(service: str, sql: str, want: int) -> float | None:
    """perf_counter() when the count reaches `want` (polled every half second; None: timed out)."""
    started = time.perf_counter()
    while time.perf_counter() - started < SCORE_TIMEOUT_S:
        if await count(service, sql) >= want:
            return time.perf_counter()
        await asyncio.sleep(0.5)
    return None


async def wait_for_scores(customers: int, since: float) -> float | None:
    """Seconds from `since` until the scoring service holds a score for every customer (None: timed out)."""
    last = -1
    while time.perf_counter() - since < SCORE_TIMEOUT_S:
        scored = await count("scoring", "SELECT count(*) FROM current_scores")
        if scored >= customers:
            return time.perf_counter() - since
        if scored != last:
            log(f"  scored {scored}/{customers} after {time.perf_counter() - since:.0f} s")
            last = scored
        await asyncio.sleep(0.5)
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = INFRA.state_dir / "data"
    shutil.rmtree(data, ignore_errors=True)
    mechanism = generate(data, args.customers, args.seed, args.as_of, args.interactions)
    log(f"generated {mechanism['customers']} customers, {mechanism['interactions']} interactions, "
        f"{mechanism['churned']} churned")  # fmt: skip
    if args.churn_on_import:
        log(f"  {churn_on_import(data)} customers carry their churn in customers.csv; no statuses import")
    platform = INFRA.fresh_platform(
        layout=args.layout, extra_env=UNTHROTTLED_ENV | (KEEP_ATTRIBUTES_ENV if args.train else {})
    )
    if args.profile:
        profile_processes(platform.specs.values(), INFRA.state_dir / "profiles")
    report: dict[str, Any] = {
        **report_start(args.layout),
        "args": vars(args) | {"json": str(args.json), "as_of": args.as_of.isoformat()},
        "files": {k: mechanism[k] for k in ("customers", "interactions", "churned")},
    }
    try:
        await start_in_order(platform)
        log("importing through the gateway with crm import")
        imports = {"customers": crm_import("customers", data, args.chunk_size)}
        # The interaction service's replica of the customers fills from their events meanwhile.
        replica = asyncio.create_task(wait_for_count("interaction", KNOWN, mechanism["customers"]))
        customers_done = time.perf_counter()
        # Each customer is scored from its customer.created: when that is done counts from here too.
        scored_since_customers = asyncio.create_task(
            wait_for_count("scoring", "SELECT count(*) FROM current_scores", mechanism["customers"])
        )
        # CPU of every process (and of the CLI, a child of this one) while the interactions import runs.
        pids = watched_processes(INFRA, platform)
        before, cli_before = cpu_snapshot(pids), _children_cpu_s()
        pg_before, known_before = await _pg_counters(), await count("interaction", KNOWN)
        imports["interactions"] = await asyncio.to_thread(crm_import, "interactions", data, args.chunk_size)
        interactions_done = time.perf_counter()
        # Scores are watched from the end of the interactions import, through the drain and the statuses.
        scoring = asyncio.create_task(wait_for_scores(mechanism["customers"], interactions_done))
        after, cli_after = cpu_snapshot(pids), _children_cpu_s()
        report["replica_during_interactions"] = [known_before, await count("interaction", KNOWN)]
        report["load_during_interactions"] = os.getloadavg()
        rows = imports["interactions"]["rows"]
        report["pg_per_interaction"] = import_stats.per_row(pg_before, await _pg_counters(), rows)
        report["interactions_cpu_ms_per_row"], report["interactions_cpu_ms_per_row_total"] = _per_row(
            before, after, cli_after - cli_before, rows
        )
        # The consumers (scoring, retention) and relays go on after the CLI has its answers: the work an
        # interaction causes is all done only when no outbox row waits and no consumer group lags.
        backlog = ImportBacklog(INFRA)
        await backlog.start()
        try:
            drained_s = await backlog.wait_drained(SCORE_TIMEOUT_S)
        finally:
            await backlog.stop()
        drained = cpu_snapshot(pids)
        report["pg_per_interaction_drained"] = import_stats.per_row(pg_before, await _pg_counters(), rows)
        report["events_handled"] = await import_stats.inbox_counts(INFRA.database_url)
        report["interactions_drained_s"] = round(drained_s, 1)
        report["interactions_rows_per_s_drained"] = round(rows / (imports["interactions"]["seconds"] + drained_s), 1)
        report["interactions_cpu_ms_per_row_drained"], report["interactions_cpu_ms_per_row_drained_total"] = _per_row(
            before, drained, cli_after - cli_before, rows
        )
        report["load_after_drain"] = os.getloadavg()
        log(f"  pipeline drained {drained_s:.1f} s after the interactions import ended")
        if not args.churn_on_import:
            imports["statuses"] = await asyncio.to_thread(crm_import, "statuses", data, args.status_chunk_size)
        report["imports"] = imports
        scored_after = await scoring
        try:  # bounded: a replica that never fills must not hold the report back
            replica_at = await asyncio.wait_for(replica, REPLICA_WAIT_S)
        except TimeoutError:
            replica_at = None
        report["replica_complete_s"] = None if replica_at is None else round(replica_at - customers_done, 1)
        report["every_customer_scored_s"] = None if scored_after is None else round(scored_after, 1)
        scored_at = await scored_since_customers
        report["every_customer_scored_after_customers_s"] = (
            None if scored_at is None else round(scored_at - customers_done, 1)
        )
        # Events still in flight settle before the count (retention's replica lags the customer store).
        await asyncio.sleep(5)
        report["stores"] = await store_counts()
        try:  # on a loaded machine the evaluation may time out at the gateway; the import's figures stand
            if not args.no_queue:
                report["queue"] = await queue_before_and_after_evaluation()
        except httpx.HTTPError as exc:
            report["queue_error"] = repr(exc)
            log(f"  queue evaluation failed: {exc!r}")
        if args.train:
            report["churn_model"] = await train_churn(INFRA.gateway, bearer_headers(role="admin", sub="bench-import"))
            log(f"  churn model: {report['churn_model']}")
    finally:
        platform.stop_all()
    return report


async def queue_sizes(gateway: httpx.AsyncClient) -> dict[str, int]:
    """What the agents' queue holds: open alerts (one per customer and reason) and work items (one per customer)."""
    alerts = (await gateway.get("/api/v1/alerts", params={"status": "open", "limit": 1})).json()["total"]
    items = (await gateway.get("/api/v1/work-items", params={"limit": 1})).json()["total"]
    return {"open_alerts": int(alerts), "work_items": int(items)}


async def queue_before_and_after_evaluation() -> dict[str, Any]:
    """The queue after the import (history beyond the horizon raised nothing), then after one evaluation of
    the alert rules on every customer's current state (POST /alerts/evaluate, paged), as the guide does it."""
    headers = bearer_headers(role="admin", sub="bench-import")
    async with httpx.AsyncClient(base_url=INFRA.gateway, headers=headers, timeout=120) as gateway:
        before = await queue_sizes(gateway)
        after_id, pages, evaluated, win_back = "", 0, 0, 0
        started = time.perf_counter()
        while True:
            response = await gateway.post("/api/v1/alerts/evaluate", params={"after": after_id, "limit": 1000})
            response.raise_for_status()
            page = response.json()
            pages, evaluated = pages + 1, evaluated + int(page["evaluated"])
            win_back += int(page.get("left_to_win_back", 0))
            if page["done"]:
                break
            after_id = page["next_after"]
        seconds = time.perf_counter() - started
        after = await queue_sizes(gateway)
    log(f"  queue before evaluation {before}, after {after} ({pages} page(s), {seconds:.1f} s)")
    return {"before_evaluation": before, "after_evaluation": after, "evaluate_pages": pages,
            "evaluated": evaluated, "left_to_win_back": win_back, "evaluate_s": round(seconds, 1)}  # fmt: skip


def profile_processes(specs: Iterable[ProcessSpec], into: Path) -> None:
    """Run every service process under cProfile (written to into/<name>.prof when it stops): where each
    process spends its CPU during the import. Slows them down; its rates are not the bench's."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    for spec in specs:
        python, *rest = spec.argv
        assert rest[0] == "-m", spec.argv
        spec.argv[:] = [python, "-m", "bench.profiled", str(into / f"{spec.name}.prof"), *rest[1:]]


def _per_row(
    before: dict[str, float], after: dict[str, float], cli_s: float, rows: int
) -> tuple[dict[str, float], float]:
    """CPU ms per row of every process between two snapshots (and the CLI's), largest first, and their sum."""
    spent = {name: after[name] - before[name] for name in before} | {"crm import (CLI)": cli_s}
    per_row = {name: round(1000 * sec / rows, 3) for name, sec in sorted(spent.items(), key=lambda kv: -kv[1])}
    return per_row, round(1000 * sum(spent.values()) / rows, 3)


async def _pg_counters() -> dict[str, dict[str, int]]:
    return await import_stats.pg_counters(INFRA.database_url, {s: INFRA.database(s) for s in import_stats.SERVICES})


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _print_share(report: dict[str, Any], rows_per_s: float, ms_per_row: float) -> None:
    """The cores the run's processes got (rows/s x CPU per row): on a shared machine a rate is the share of
    it the import got, times what one row costs; and the rate all of the machine's cores would carry."""
    cores = report["machine"]["cores"]
    print(f"{'cores used':>28}: {rows_per_s * ms_per_row / 1000:8.2f} of {cores}; all {cores} would carry "
          f"{1000 * cores / ms_per_row:,.0f} rows/s at this cost")  # fmt: skip


def print_report(report: dict[str, Any]) -> None:
    files, stores = report["files"], report.get("stores", {})
    print(f"\nmachine: {report['machine']['cores']} cores; {report['layout']}")
    for kind, result in report.get("imports", {}).items():
        print(f"{kind:>13}: {result['rows']:>9,} rows {result['seconds']:>8.1f} s {result['rows_per_s']:>9,.0f} rows/s"
              f"  exit {result['exit_code']}")  # fmt: skip
    if "interactions_cpu_ms_per_row" in report:
        load = report["load_during_interactions"][0]
        print(f"CPU ms per interaction during its import (load average {load:.1f} at its end), "
              f"{report['interactions_cpu_ms_per_row_total']} in all:")  # fmt: skip
        for name, ms in report["interactions_cpu_ms_per_row"].items():
            print(f"{name:>28}: {ms:8.3f}")
        _print_share(
            report, report["imports"]["interactions"]["rows_per_s"], report["interactions_cpu_ms_per_row_total"]
        )
    if "interactions_drained_s" in report:
        print(f"pipeline drained {report['interactions_drained_s']} s after the interactions import ended: "
              f"{report['interactions_rows_per_s_drained']:,.0f} interactions/s through every store; CPU ms per "
              f"interaction until drained (load average {report['load_after_drain'][0]:.1f}), "
              f"{report['interactions_cpu_ms_per_row_drained_total']} in all:")  # fmt: skip
        for name, ms in report["interactions_cpu_ms_per_row_drained"].items():
            print(f"{name:>28}: {ms:8.3f}")
        _print_share(
            report, report["interactions_rows_per_s_drained"], report["interactions_cpu_ms_per_row_drained_total"]
        )
    for name, counters in report.get("pg_per_interaction_drained", {}).items():
        print(f"{'PostgreSQL ' + name:>28}: per interaction until drained {counters}")
    for name, events in report.get("events_handled", {}).items():
        print(f"{name + ' handled':>28}: {events}")
    print(f"every customer scored {report.get('every_customer_scored_after_customers_s')} s after the customers "
          f"import ended ({report.get('every_customer_scored_s')} s after the interactions import ended)")  # fmt: skip
    if "replica_complete_s" in report:
        print(f"the interaction service's replica held every customer {report['replica_complete_s']} s after the "
              "customers import ended")  # fmt: skip
    if "replica_during_interactions" in report:  # filled by the consumer that shares a loop with the import
        (first, last), seconds = report["replica_during_interactions"], report["imports"]["interactions"]["seconds"]
        print(
            f"interaction replica during the interactions import: {first} -> {last}, {(last - first) / seconds:.0f}/s"
        )
    if "queue" in report:
        queue = report["queue"]
        print(f"agents' queue after the import: {queue['before_evaluation']}; after one POST /alerts/evaluate "
              f"({queue['evaluated']} customers judged, {queue.get('left_to_win_back', 0)} left to win-back, "
              f"{queue['evaluate_pages']} page(s), {queue['evaluate_s']} s): "
              f"{queue['after_evaluation']}")  # fmt: skip
    expected = {
        "customer.customers": files["customers"],
        "customer.churned": files["churned"],
        "interaction.interactions": files["interactions"],
        "interaction.known_customers": files["customers"],
        "scoring.current_scores": files["customers"],
        "retention.customers": files["customers"],
    }
    for name, want in expected.items():
        got = stores.get(name)
        verdict = "ok" if got == want else ("replica still converging" if name.endswith("known_customers") else "LOST")
        print(f"{name:>28}: {got!s:>9} of {want:>9}  {verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000, help="default %(default)s (100000 for a migration)")
    parser.add_argument(
        "--interactions", type=int, help="pad the histories to exactly this many (1000000 with --customers 100000)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--churn-on-import", action="store_true", help="churns in customers.csv, no statuses file")
    parser.add_argument("--train", action="store_true", help="train the churn model at the end; report its AUC")
    parser.add_argument(
        "--as-of", type=date.fromisoformat, default=AS_OF, help="the export's day; a year back makes it all history"
    )
    parser.add_argument("--chunk-size", type=int, default=2000, help="rows per request (default %(default)s)")
    parser.add_argument(
        "--status-chunk-size", type=int, default=2000, help="rows per statuses request (default %(default)s)"
    )
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="combined")
    parser.add_argument("--profile", action="store_true", help="cProfile every process into <state>/profiles")
    parser.add_argument("--no-queue", action="store_true", help="skip the alert evaluation and queue sizes at the end")
    parser.add_argument("--keep-infra", action="store_true", help="leave Kafka and PostgreSQL running")
    parser.add_argument("--json", type=Path, default=INFRA.state_dir / "imports.json")
    args = parser.parse_args(argv)
    report = run_on_fresh_infra(INFRA, "bench.imports", lambda: run(args), keep_infra=args.keep_infra)
    write_report(report, args.json, print_report)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
