"""Overload through the gateway: shed early, lose nothing acknowledged, recover: ``python -m bench.overload``
(`make bench-overload`).

Starts a private Kafka + PostgreSQL and the platform (one process per service, as `make run`), creates a
pool of customers, then:

1. finds the sustainable rate (unless ``--rate``): open-loop steps of single interactions through the
   gateway, rising by ``--step`` from ``--start``, each ``--step-seconds`` long; a step is sustained when
   every request was acknowledged, at least 95 % of the offered rate was achieved and its p99 stayed under
   ``--sustained-p99-ms``; the highest sustained step is the rate R;
2. runs three phases open loop: normal (R for ``--normal-seconds``), overload (``--factor`` x R for
   ``--overload-seconds``), then normal again (R for ``--recovery-seconds``);
3. reports per phase the HTTP p50/p99 of acknowledged requests (from each request's scheduled time, so a
   queue anywhere counts), answers by status, the shed share (429/503 with Retry-After), the recovery time
   (from the end of the overload until the p99 of every later 2-second window is back under
   max(2 x the normal phase's p99, the normal p99 + 50 ms)), and a count check: every acknowledged
   interaction is in the interaction store and no shed one is.

``--no-admission`` runs the same with GATEWAY_ADMISSION=false, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.infra import Infra, run_on_fresh_infra, start_in_order, write_report
from bench.pipeline import percentile
from runner.launcher import SERVICES
from servicekit.settings import REPO_ROOT

# Ports apart from `make run`, `make test`, `make chaos` and the other benchmarks.
INFRA = Infra(REPO_ROOT / ".state" / "bench-overload", kafka_port=19882, pg_port=55711, port_offset=25500)
WINDOW_S = 2.0  # recovery is judged on windows of this many seconds of scheduled sends


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(slots=True)
class Sent:
    scheduled: float
    done: float
    status: int
    external_id: str
    interaction_id: str | None
    retry_after: bool


def interaction(customer_id: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "type": "call",
        "channel": "phone",
        "initiated_by": "customer",
        "text": "Asked about the renewal terms.",
        "external_id": f"overload-{uuid.uuid4()}",
    }


async def open_loop(
    http: aiohttp.ClientSession, url: str, customers: list[str], rate: float, seconds: float, start: float
) -> list[Sent]:
    """POST request n at start + n/rate whatever the earlier ones are doing; latency from that scheduled time."""
    total = int(rate * seconds)
    sent: list[Sent] = []
    in_flight: set[asyncio.Task[None]] = set()

    async def one(n: int, scheduled: float) -> None:
        body = interaction(customers[n % len(customers)])
        status, interaction_id, retry_after = 0, None, False
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.post(url, data=orjson.dumps(body), headers={"content-type": "application/json"}) as resp:
                answer = await resp.read()
                status, retry_after = resp.status, "retry-after" in resp.headers
                if 200 <= status < 300:
                    interaction_id = orjson.loads(answer)["id"]
        sent.append(Sent(scheduled, time.monotonic(), status, body["external_id"], interaction_id, retry_after))

    n = 0
    while n < total:
        now = time.monotonic()
        while n < total and start + n / rate <= now:
            task = asyncio.create_task(one(n, start + n / rate))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            n += 1
        if n < total:
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    while in_flight:
        await asyncio.wait(set(in_flight))
    return sent


def latency_ms(sent: list[Sent]) -> dict[str, float]:
    ok = [(s.done - s.scheduled) * 1000 for s in sent if 200 <= s.status < 300]
    if not ok:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    return {"n": len(ok), "p50": round(percentile(ok, 0.50), 1), "p99": round(percentile(ok, 0.99), 1),
            "max": round(max(ok), 1)}  # fmt: skip


def summary(name: str, rate: float, seconds: float, sent: list[Sent], start: float) -> dict[str, Any]:
    statuses = Counter(str(s.status or "no answer") for s in sent)
    shed = [s for s in sent if s.status in (429, 503)]
    ok = [s for s in sent if 200 <= s.status < 300]
    last = max((s.done for s in ok), default=start + seconds)
    return {
        "phase": name,
        "offered_per_s": rate,
        "seconds": seconds,
        "sent": len(sent),
        "acknowledged": len(ok),
        "achieved_per_s": round(len(ok) / max(last - start, seconds), 1),
        "by_status": dict(statuses),
        "shed": len(shed),
        "shed_share": round(len(shed) / max(len(sent), 1), 3),
        "shed_with_retry_after": sum(s.retry_after for s in shed),
        "http_ms": latency_ms(sent),
    }


def windows(sent: list[Sent], origin: float) -> dict[int, list[Sent]]:
    """The requests scheduled from `origin` on, by WINDOW_S-second window."""
    by_window: dict[int, list[Sent]] = {}
    for s in sent:
        if s.scheduled >= origin:
            by_window.setdefault(int((s.scheduled - origin) // WINDOW_S), []).append(s)
    return by_window


def recovery_s(sent: list[Sent], overload_end: float, bound_ms: float) -> float | None:
    """Seconds from the end of the overload until every later window's p99 is within bound_ms, with every
    request of those windows acknowledged; None: not within the phase."""
    recovered_from: int | None = None
    for index, in_window in sorted(windows(sent, overload_end).items()):
        failed = any(not 200 <= s.status < 300 for s in in_window)
        if latency_ms(in_window)["p99"] > bound_ms or failed:
            recovered_from = None
        elif recovered_from is None:
            recovered_from = index
    return None if recovered_from is None else recovered_from * WINDOW_S


def metric_sum(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


async def monitor(http: aiohttp.ClientSession, infra: Infra, seen: list[dict[str, Any]], stop: asyncio.Event) -> None:
    """Once a second: the gateway's admission limit towards the interaction service and its sheds so far, every
    consumer's lag and the interaction store's unpublished outbox rows, to tell where a slow recovery waits."""
    store = await asyncpg.connect(infra.database_url("interaction", driver="postgresql"))
    try:
        while not stop.is_set():
            row: dict[str, Any] = {"t": time.monotonic()}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{infra.gateway}/metrics") as resp:
                    text = (await resp.read()).decode()
                row["limit"] = metric_sum(text, 'crm_gateway_admission_limit{service="interaction"}')
                row["shed"] = metric_sum(text, "crm_gateway_shed_total{")
            lag = 0.0
            for port in SERVICES.values():
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"http://127.0.0.1:{port + infra.port_offset}/metrics") as resp:
                        lag += metric_sum((await resp.read()).decode(), "crm_consumer_lag{")
            row["consumer_lag"] = lag
            row["outbox"] = await store.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            seen.append(row)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await store.close()


def window_table(sent: list[Sent], seen: list[dict[str, Any]], origin: float, bound_ms: float) -> list[dict[str, Any]]:
    """Per WINDOW_S window from origin: p99, refusals, and the last monitor row of the window."""
    rows = []
    for index, in_window in sorted(windows(sent, origin).items()):
        start, end = origin + index * WINDOW_S, origin + (index + 1) * WINDOW_S
        at = [m for m in seen if start <= m["t"] < end]
        last = at[-1] if at else {}
        rows.append(
            {
                "from_s": round(index * WINDOW_S, 1),
                "p99_ms": latency_ms(in_window)["p99"],
                "over_bound": latency_ms(in_window)["p99"] > bound_ms,
                "refused": sum(not 200 <= s.status < 300 for s in in_window),
                "admission_limit": last.get("limit"),
                "consumer_lag": last.get("consumer_lag"),
                "outbox_unpublished": last.get("outbox"),
            }
        )
    return rows


async def create_customers(http: aiohttp.ClientSession, api: str, count: int) -> list[str]:
    ids: list[str] = []
    for offset in range(0, count, 2000):
        rows = [
            {"name": f"Overload {i}", "kind": "person", "owner": "bench", "segment": "bench"}
            for i in range(offset, min(count, offset + 2000))
        ]
        async with http.post(f"{api}/customers/bulk", json={"rows": rows}) as resp:
            body = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"bulk import answered {resp.status}: {str(body)[:300]}")
        ids += [r["id"] for r in body["rows"] if r["status"] == "created"]
    return ids


async def find_sustainable(
    http: aiohttp.ClientSession, url: str, customers: list[str], args: argparse.Namespace
) -> float:
    sustained = 0.0
    rate = args.start
    while rate <= args.max_rate:
        sent = await open_loop(http, url, customers, rate, args.step_seconds, time.monotonic() + 0.2)
        step = summary(f"step {rate:g}/s", rate, args.step_seconds, sent, sent[0].scheduled if sent else 0)
        ok = (
            step["acknowledged"] == step["sent"]
            and step["achieved_per_s"] >= 0.95 * rate
            and step["http_ms"]["p99"] <= args.sustained_p99_ms
        )
        verdict = "sustained" if ok else "NOT sustained"
        log(f"  step {rate:g}/s: achieved {step['achieved_per_s']}/s, {step['by_status']}, p50 "
            f"{step['http_ms']['p50']} ms, p99 {step['http_ms']['p99']} ms -> {verdict}")  # fmt: skip
        if not ok:
            break
        sustained = rate
        rate += args.step
        await asyncio.sleep(3)  # let queues drain between steps
    if not sustained:
        log(f"not even {args.start:g}/s was sustained: the overload phases run at {args.start:g}/s and twice that")
        return float(args.start)
    return sustained


async def run(args: argparse.Namespace) -> dict[str, Any]:
    infra = INFRA
    log_dir = infra.state_dir / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    env = {**UNTHROTTLED_ENV, **({"GATEWAY_ADMISSION": "false"} if args.no_admission else {})}
    platform = infra.platform(layout="combined", log_dir=log_dir, extra_env=env)
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()},
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "admission": not args.no_admission,
    }
    store = await asyncpg.connect(infra.database_url("interaction", driver="postgresql"))
    try:
        await start_in_order(platform)
        api = f"{infra.gateway}/api/v1"
        url = f"{api}/interactions"
        # The client must never be the queue: far more connections than the gateway will hold in flight.
        connector = aiohttp.TCPConnector(limit=args.connections, keepalive_timeout=3)
        timeout = aiohttp.ClientTimeout(total=args.client_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=bearer_headers()) as http:
            customers = await create_customers(http, api, args.customers)
            log(f"{len(customers)} customers created; waiting for the interaction service to know them")
            # Its replica, from customer.created: until then each interaction costs a call to the customer service.
            deadline = time.monotonic() + 600
            while await store.fetchval(
                "SELECT count(*) FROM known_customers WHERE customer_id = ANY($1)", customers
            ) < len(customers):
                if time.monotonic() > deadline:
                    raise TimeoutError("customer.created not applied by the interaction service within 600 s")
                await asyncio.sleep(0.5)
            await open_loop(http, url, customers, 20, 10, time.monotonic())  # warm-up
            await asyncio.sleep(3)
            if args.rate:
                rate = args.rate
            else:
                log("finding the sustainable rate")
                rate = await find_sustainable(http, url, customers, args)
            report["sustainable_per_s"] = rate
            await asyncio.sleep(5)
            plan = [
                ("normal", rate, args.normal_seconds),
                ("overload", rate * args.factor, args.overload_seconds),
                ("after", rate, args.recovery_seconds),
            ]
            # One schedule, no gap: each phase starts when the previous one's sends end.
            start = time.monotonic() + 0.5
            tasks, starts = [], {}
            for name, phase_rate, seconds in plan:
                starts[name] = start
                tasks.append(asyncio.create_task(open_loop(http, url, customers, phase_rate, seconds, start)))
                start += seconds
            log(f"phases: normal {rate:g}/s for {args.normal_seconds:g} s, overload {rate * args.factor:g}/s for "
                f"{args.overload_seconds:g} s, normal {rate:g}/s for {args.recovery_seconds:g} s")  # fmt: skip
            seen: list[dict[str, Any]] = []
            stop_monitor = asyncio.Event()
            watching = asyncio.create_task(monitor(http, infra, seen, stop_monitor))
            results = await asyncio.gather(*tasks)
            stop_monitor.set()
            await watching
            phases = [
                summary(name, phase_rate, seconds, sent, starts[name])
                for (name, phase_rate, seconds), sent in zip(plan, results, strict=True)
            ]
            for phase in phases:
                log(json.dumps(phase))
            report["phases"] = phases
            normal_p99 = phases[0]["http_ms"]["p99"]
            bound = max(2 * normal_p99, normal_p99 + 50)
            report["recovery_bound_ms"] = bound
            report["recovery_s"] = recovery_s(results[2], starts["after"], bound)
            # Stricter: back under the normal phase's own p99, not twice it.
            report["recovery_to_normal_p99_s"] = recovery_s(results[2], starts["after"], normal_p99)
            report["windows_after_detail"] = window_table(results[2], seen, starts["after"], bound)
            report["windows_overload_detail"] = window_table(results[1], seen, starts["overload"], bound)
            report["windows_after"] = [
                (round(i * WINDOW_S, 1), latency_ms(ws)["p99"])
                for i, ws in sorted(windows(results[2], starts["after"]).items())
            ]
            # Nothing acknowledged is lost, nothing shed was stored.
            every = [s for sent in results for s in sent]
            acknowledged = [s.interaction_id for s in every if s.interaction_id]
            refused = [s.external_id for s in every if not 200 <= s.status < 300]
            stored = await store.fetchval("SELECT count(*) FROM interactions WHERE id = ANY($1)", acknowledged)
            refused_stored = await store.fetchval(
                "SELECT count(*) FROM interactions WHERE external_id = ANY($1)", refused
            )
            report["count_check"] = {
                "acknowledged": len(acknowledged),
                "acknowledged_stored": stored,
                "refused": len(refused),
                "refused_stored": refused_stored,
                "ok": stored == len(acknowledged),
            }
            log(f"count check: {report['count_check']}")
    finally:
        platform.stop_all()
        await store.close()
    report["load_after"] = os.getloadavg()
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"\nmachine: {report['machine']}, load after: {report['load_after']}")
    admission = "on" if report["admission"] else "off"
    print(f"admission control: {admission}; sustainable rate {report['sustainable_per_s']:g}/s")
    columns = ["phase", "offered/s", "sent", "acknowledged", "achieved/s", "shed (share)", "other failures",
               "p50 ms", "p99 ms", "max ms"]  # fmt: skip
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for p in report["phases"]:
        other = {k: v for k, v in p["by_status"].items() if not k.startswith("2") and k not in ("429", "503")}
        cells = [p["phase"], p["offered_per_s"], p["sent"], p["acknowledged"], p["achieved_per_s"],
                 f"{p['shed']} ({p['shed_share']:.1%})", other or 0, p["http_ms"]["p50"], p["http_ms"]["p99"],
                 p["http_ms"]["max"]]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    recovery = report["recovery_s"]
    bound = report["recovery_bound_ms"]
    print(f"\nrecovery after the overload (every later {WINDOW_S:g}-s window's p99 under {bound:g} ms): "
          f"{'not within the phase' if recovery is None else f'{recovery:g} s'}")  # fmt: skip
    strict = report.get("recovery_to_normal_p99_s")
    print(f"recovery to under the normal phase's own p99 ({report['phases'][0]['http_ms']['p99']:g} ms): "
          f"{'not within the phase' if strict is None else f'{strict:g} s'}")  # fmt: skip
    print(f"p99 per {WINDOW_S:g}-s window after the overload: {report['windows_after']}")
    for key, title in (("windows_overload_detail", "during"), ("windows_after_detail", "after")):
        if key not in report:
            continue
        print(f"\n{title} the overload, per {WINDOW_S:g}-s window (admission limit towards interaction, lag, outbox):")
        print("| from s | p99 ms | refused | admission limit | consumer lag | outbox unpublished |")
        print("|---:|---:|---:|---:|---:|---:|")
        for w in report[key]:
            mark = " (over)" if w["over_bound"] else ""
            print(f"| {w['from_s']} | {w['p99_ms']}{mark} | {w['refused']} | {w['admission_limit']} |"
                  f" {w['consumer_lag']} | {w['outbox_unpublished']} |")  # fmt: skip
    print(f"count check: {report['count_check']}")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.0, help="the sustainable rate, skipping the search")
    parser.add_argument("--start", type=float, default=25.0, help="first step of the search (interactions/s)")
    parser.add_argument("--step", type=float, default=25.0, help="increase per step of the search")
    parser.add_argument("--max-rate", type=float, default=1000.0, help="highest step of the search")
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--sustained-p99-ms", type=float, default=500.0, help="a sustained step's p99 bound")
    parser.add_argument("--factor", type=float, default=2.0, help="overload = factor x the sustainable rate")
    parser.add_argument("--normal-seconds", type=float, default=30.0)
    parser.add_argument("--overload-seconds", type=float, default=60.0)
    parser.add_argument("--recovery-seconds", type=float, default=60.0)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=2000, help="the load generator's connection cap")
    parser.add_argument("--client-timeout-s", type=float, default=120.0)
    parser.add_argument("--no-admission", action="store_true", help="GATEWAY_ADMISSION=false (for comparison)")
    parser.add_argument("--keep-infra", action="store_true", help="leave Kafka and PostgreSQL running afterwards")
    parser.add_argument("--json", type=Path, default=INFRA.state_dir / "overload.json")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    report = run_on_fresh_infra(INFRA, "bench.overload", lambda: run(args), keep_infra=args.keep_infra)
    write_report(report, args.json, print_report)


if __name__ == "__main__":
    main()
