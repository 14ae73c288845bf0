"""What runs and how it is doing: ``python -m runner.status`` (``make status``).

For the gateway and each service: whether the launcher runs it (pid, restarts, from <state>/platform.json
that `make run` writes), /health/live, /health/ready with the failing checks, and from /metrics the
consumer lag (the worst partition), the outbox backlog and the age of its oldest row. Works against any
platform reachable on the usual ports, launched by `make run` or not. Exit status 0 when every process is
ready, 1 otherwise, so scripts can wait on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from servicekit.settings import GATEWAY_PORT, SERVICE_PORTS, state_dir


@dataclass
class ProcessStatus:
    name: str
    port: int
    launcher: dict[str, Any] = field(default_factory=dict)
    live: bool = False
    ready: bool = False
    failing: list[str] = field(default_factory=list)
    lag: float | None = None
    backlog: float | None = None
    oldest_age_s: float | None = None


def metric_values(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of a Prometheus text exposition, by sample name."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def _max(samples: list[tuple[dict[str, str], float]] | None) -> float | None:
    return max((v for _, v in samples), default=None) if samples else None


def failing_checks(body: Any) -> list[str]:
    """Names of the failed checks in a /health/ready body; nested for the gateway (service.check)."""
    checks = body.get("checks") if isinstance(body, dict) else None
    if not isinstance(checks, dict):
        return []
    failed: list[str] = []
    for name, check in checks.items():
        if not isinstance(check, dict) or check.get("ok"):
            continue
        inner = failing_checks(check)
        failed.extend(f"{name}.{n}" for n in inner) if inner else failed.append(name)
    return failed


def probe(client: httpx.Client, name: str, port: int, launcher: dict[str, Any]) -> ProcessStatus:
    status = ProcessStatus(name, port, launcher)
    base = f"http://127.0.0.1:{port}"
    try:
        status.live = client.get(f"{base}/health/live").status_code == 200
        ready = client.get(f"{base}/health/ready")
        status.ready = ready.status_code == 200
        try:
            status.failing = failing_checks(ready.json())
        except ValueError:
            status.failing = [f"HTTP {ready.status_code}"]
    except httpx.HTTPError as exc:
        status.failing = [type(exc).__name__]
        return status
    token = os.environ.get("CRM_METRICS_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = client.get(f"{base}/metrics", headers=headers)
        if response.status_code == 200:
            values = metric_values(response.text)
            status.lag = _max(values.get("crm_consumer_lag"))
            status.backlog = _max(values.get("crm_outbox_backlog"))
            status.oldest_age_s = _max(values.get("crm_outbox_oldest_age_seconds"))
    except httpx.HTTPError:
        pass  # health is known; metrics stay "-"
    return status


def collect(port_offset: int = 0, timeout_s: float = 2.0) -> list[ProcessStatus]:
    launched = _launcher_state(state_dir() / "platform.json")
    ports = {**{n: p + port_offset for n, p in SERVICE_PORTS.items()}, "gateway": GATEWAY_PORT + port_offset}
    # Processes beyond one per service, from the launcher's record: under CRM_LAYOUT=consumer-apart each
    # consumer is a process of its own, with its own port (its lag is reported there).
    for name, info in launched.items():
        if name not in ports and isinstance(info.get("port"), int):
            ports[name] = info["port"]
    with httpx.Client(timeout=timeout_s) as client:
        return [probe(client, name, port, launched.get(name, {})) for name, port in ports.items()]


def _launcher_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    processes = body.get("processes") if isinstance(body, dict) else None
    return processes if isinstance(processes, dict) else {}


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def render(statuses: list[ProcessStatus]) -> str:
    head = ("PROCESS", "PORT", "PID", "STATE", "RESTARTS", "LIVE", "READY", "LAG", "OUTBOX", "OLDEST", "FAILING")
    rows = [head]
    for s in statuses:
        rows.append(
            (
                s.name,
                str(s.port),
                str(s.launcher.get("pid") or "-"),
                str(s.launcher.get("state") or ("up" if s.live else "down")),
                str(s.launcher.get("restarts", "-")),
                "yes" if s.live else "no",
                "yes" if s.ready else "no",
                _num(s.lag),
                _num(s.backlog),
                _num(s.oldest_age_s, "s"),
                ", ".join(s.failing) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.status", description=__doc__.splitlines()[0])
    parser.add_argument("--port-offset", type=int, default=0, help="the platform's ports are the usual ones + this")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    statuses = collect(args.port_offset)
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=2))
    else:
        print(render(statuses))
    sys.exit(0 if all(s.ready for s in statuses) else 1)


if __name__ == "__main__":
    main()
