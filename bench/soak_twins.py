"""A/B within one soak: a consumer process and its twin, the same service's consumer with other settings
(e.g. ``--twin retention-consumer:CRM_CONSUMER_PYTHONMALLOC=malloc``), joined to the same group. With the
topics' 6 partitions each takes 3 of every topic, so both see the same stream at the same moments on the
same loaded machine: their RSS and CPU per event compare directly, which two soaks one after the other on
a shared machine do not."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from bench.infra import another_instance, cpu_seconds
from runner.launcher import Platform, allocator_env
from servicekit.settings import PlatformSettings

TWIN_PORT_STEP = 50  # as bench.chaos and bench.pipeline place a second instance


def parse_twin(text: str) -> tuple[str, dict[str, str]]:
    """'PROCESS:VAR=VALUE,VAR=VALUE' -> (PROCESS, {VAR: VALUE}); CRM_CONSUMER_PYTHONMALLOC becomes the
    PYTHONMALLOC the launcher would give (runner.launcher.allocator_env)."""
    process, _, assignments = text.partition(":")
    env: dict[str, str] = {}
    for item in filter(None, assignments.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--twin {text!r}: expected PROCESS:VAR=VALUE[,VAR=VALUE]")
        env[name.strip()] = value.strip()
    if "CRM_CONSUMER_PYTHONMALLOC" in env:
        chosen = PlatformSettings.model_validate({"consumer_pythonmalloc": env["CRM_CONSUMER_PYTHONMALLOC"]})
        env |= allocator_env("consume", chosen)
    return process, env


def twin_name(process: str) -> str:
    """retention-consumer -> retention-twin-consumer (still a '-consumer', so its lag is sampled)."""
    base = process.removesuffix("-consumer")
    return f"{base}-twin-consumer"


def add_twins(platform: Platform, twins: list[str]) -> dict[str, dict[str, str]]:
    """Each twin's spec added to the platform (started with the others); its name -> the settings it differs by."""
    added: dict[str, dict[str, str]] = {}
    for text in twins:
        process, env = parse_twin(text)
        first = platform.specs[process]
        spec = another_instance(first, twin_name(process), first.port + TWIN_PORT_STEP)
        spec.env |= env
        platform.specs[spec.name] = spec
        added[spec.name] = env
    return added


async def consumer_costs(platform: Platform, client: httpx.AsyncClient) -> dict[str, dict[str, float]]:
    """Each consumer process's CPU seconds so far and the events its handlers committed (its /metrics)."""
    out: dict[str, dict[str, float]] = {}
    for name, proc in list(platform.running.items()):
        if not name.endswith("-consumer") or proc.popen.poll() is not None:
            continue
        with contextlib.suppress(httpx.HTTPError, OSError):
            text = (await client.get(f"http://127.0.0.1:{proc.spec.port}/metrics", timeout=5)).text
            handled = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("crm_events_handled_total{")
            )
            out[name] = {"cpu_s": cpu_seconds(proc.popen.pid), "handled": handled}
    return out


def cost_rows(start: dict[str, dict[str, float]], end: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per consumer process between two readings: events handled, CPU seconds, CPU ms per event."""
    rows = []
    for name in sorted(set(start) & set(end)):
        events = end[name]["handled"] - start[name]["handled"]
        cpu = end[name]["cpu_s"] - start[name]["cpu_s"]
        rows.append(
            {
                "process": name,
                "events": int(events),
                "cpu_s": round(cpu, 2),
                "cpu_ms_per_event": round(1000 * cpu / events, 3) if events else None,
            }
        )
    return rows


def print_costs(report: dict[str, Any]) -> None:
    if report.get("twins"):
        print(f"\ntwins (same group, half the partitions each): {report['twins']}")
    rows = report.get("consumer_costs", [])
    if rows:
        print("\nconsumer CPU from the end of the warm-up to the end of the stream:")
        print("| process | events handled | CPU s | CPU ms per event |")
        print("|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r['process']} | {r['events']} | {r['cpu_s']} | {r['cpu_ms_per_event']} |")
