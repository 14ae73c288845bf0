"""Grafana dashboards as code: ``python deploy/grafana/dashboards.py`` writes deploy/grafana/dashboards/*.json
and the Kubernetes ConfigMap deploy/k8s/grafana-dashboards.yaml from the definitions below.

Edit here, regenerate, commit both; tests/unit/ops/test_dashboards.py fails when the files are stale, when a
dashboard is malformed, and (with the platform running, tests/e2e/test_observability.py) when a query names a
metric no process exports. Queries use only metrics from servicekit/metrics.py, gateway/metrics.py,
services/*/metrics.py and prometheus_client's process collector (process_*; the `job` label comes from the
scrape config, deploy/prometheus/prometheus.yml: crm-<service>).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
CONFIGMAP = HERE.parent / "k8s" / "grafana-dashboards.yaml"
DATASOURCE = {"type": "prometheus", "uid": "crm-prometheus"}
SERVICE = 'service=~"$service"'
RATE = "$__rate_interval"


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    found = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        found.update(instant=True, range=False, format="table")
    return found


def panel(
    title: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    width: int = 12,
    height: int = 8,
    description: str = "",
) -> dict[str, Any]:
    refs = "ABCDEFGH"
    for i, t in enumerate(targets):
        t["refId"] = refs[i]
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "gridPos": {"w": width, "h": height},
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]) -> dict[str, Any]:
    x = y = 0
    line_height = 0
    for i, p in enumerate(panels, start=1):  # lay panels out left to right, wrapping at 24 columns
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24 or p["type"] == "row":
            x, y = 0, y + line_height
            line_height = 0
        p["gridPos"].update(x=x, y=y)
        p["id"] = i
        x += w
        line_height = max(line_height, h)
        if p["type"] == "row":
            x, y, line_height = 0, y + h, 0
    return {
        "uid": uid,
        "title": title,
        "tags": ["crm"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": panels,
    }


def service_variable() -> dict[str, Any]:
    return {
        "name": "service",
        "label": "service",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": "label_values(crm_http_request_duration_seconds_count, service)", "refId": "service"},
        "definition": "label_values(crm_http_request_duration_seconds_count, service)",
        "includeAll": True,
        "multi": True,
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
    }


def quantile(q: str, metric: str, by: str = "service", where: str = SERVICE) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{where}}}[{RATE}])))"


def services_dashboard() -> dict[str, Any]:
    count = "crm_http_request_duration_seconds_count"
    return dashboard(
        "crm-services",
        "CRM / services: golden signals",
        [
            row("Traffic and errors"),
            panel(
                "Request rate by service",
                [target(f"sum by (service) (rate({count}{{{SERVICE}}}[{RATE}]))", "{{service}}")],
                unit="reqps",
            ),
            panel(
                "5xx ratio by service",
                [
                    target(
                        f'sum by (service) (rate({count}{{{SERVICE},status=~"5.."}}[{RATE}]))'
                        f" / sum by (service) (rate({count}{{{SERVICE}}}[{RATE}]))",
                        "{{service}}",
                    )
                ],
                unit="percentunit",
                description="Alert CrmHighErrorRatio fires above 5% for 5 minutes.",
            ),
            panel(
                "4xx rate by service and status",
                [
                    target(
                        f'sum by (service, status) (rate({count}{{{SERVICE},status=~"4.."}}[{RATE}]))',
                        "{{service}} {{status}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Slowest routes (p95)",
                [
                    target(
                        "topk(10, "
                        + quantile("0.95", "crm_http_request_duration_seconds", "service, method, route")
                        + ")",
                        "{{service}} {{method}} {{route}}",
                    )
                ],
                unit="s",
            ),
            row("Latency"),
            panel(
                "Latency p50 / p95 / p99 by service",
                [
                    target(quantile("0.5", "crm_http_request_duration_seconds"), "p50 {{service}}"),
                    target(quantile("0.95", "crm_http_request_duration_seconds"), "p95 {{service}}"),
                    target(quantile("0.99", "crm_http_request_duration_seconds"), "p99 {{service}}"),
                ],
                unit="s",
                width=24,
            ),
            panel(
                "Gateway to service: p95 by upstream and outcome",
                [
                    target(
                        quantile("0.95", "crm_gateway_upstream_duration_seconds", "service, outcome", SERVICE),
                        "{{service}} {{outcome}}",
                    )
                ],
                unit="s",
            ),
            panel(
                "Gateway to service: 5xx and transport failures",
                [
                    target(
                        "sum by (service, outcome) (rate(crm_gateway_upstream_duration_seconds_count"
                        f'{{{SERVICE},outcome!~"[234]xx"}}[{RATE}]))',
                        "{{service}} {{outcome}}",
                    )
                ],
                unit="reqps",
            ),
            row("Saturation"),
            panel(
                "CPU per process",
                [target(f'rate(process_cpu_seconds_total{{job=~"crm-.*"}}[{RATE}])', "{{job}} {{instance}}")],
                unit="percentunit",
                width=8,
            ),
            panel(
                "Resident memory per process",
                [target('process_resident_memory_bytes{job=~"crm-.*"}', "{{job}} {{instance}}")],
                unit="bytes",
                width=8,
            ),
            panel(
                "Open file descriptors / limit",
                [target('process_open_fds{job=~"crm-.*"} / process_max_fds{job=~"crm-.*"}', "{{job}} {{instance}}")],
                unit="percentunit",
                width=8,
            ),
            row("Readiness"),
            panel(
                "Ready (last /health/ready answer)",
                [target("min by (service) (crm_ready)", "{{service}}")],
                kind="stat",
                width=12,
                description="1 ready, 0 not; the orchestrator's probes refresh it. Alert CrmNotReady.",
            ),
            panel(
                "Failing readiness checks",
                [target("crm_ready_check == 0", "{{service}}: {{check}}")],
                kind="table",
                width=12,
                description="For the gateway, each check is a service it fronts.",
            ),
        ],
        [service_variable()],
    )


def pipeline_dashboard() -> dict[str, Any]:
    return dashboard(
        "crm-pipeline",
        "CRM / event pipeline: outbox, Kafka, inbox",
        [
            row("Consumers"),
            panel(
                "Consumer lag per group and partition",
                [
                    target(
                        "max by (service, topic, partition) (crm_consumer_lag)", "{{service}} {{topic}}/{{partition}}"
                    )
                ],
                width=24,
                description="The group is the service name. Alert CrmConsumerLagHigh: over 1000 for 10 minutes.",
            ),
            panel(
                "Events handled per second",
                [
                    target(
                        f"sum by (service, event_type) (rate(crm_events_handled_total[{RATE}]))",
                        "{{service}} {{event_type}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Handler failures and duplicates",
                [
                    target(f"sum by (service) (rate(crm_events_failed_total[{RATE}]))", "failed {{service}}"),
                    target(f"sum by (service) (rate(crm_events_duplicate_total[{RATE}]))", "duplicate {{service}}"),
                ],
                unit="ops",
            ),
            row("Outbox"),
            panel(
                "Outbox backlog (rows not yet published)",
                [target("max by (service) (crm_outbox_backlog)", "{{service}}")],
                width=8,
            ),
            panel(
                "Outbox oldest unpublished row age",
                [target("max by (service) (crm_outbox_oldest_age_seconds)", "{{service}}")],
                unit="s",
                width=8,
                description="Alert CrmOutboxStale: over 60 s for 5 minutes.",
            ),
            panel(
                "Outbox commit to broker ack (p95)",
                [target(quantile("0.95", "crm_outbox_publish_delay_seconds", "service", ""), "{{service}}")],
                unit="s",
                width=8,
            ),
            panel(
                "Published per second by service",
                [target(f"sum by (service) (rate(crm_outbox_published_total[{RATE}]))", "{{service}}")],
                unit="ops",
            ),
            panel(
                "Rows per relay round (p50)",
                [target(quantile("0.5", "crm_outbox_publish_round_rows", "service", ""), "{{service}}")],
            ),
            row("Dead letters"),
            panel(
                "Dead-lettered in the last hour, by reason",
                [
                    target(
                        "sum by (service, topic, reason) (increase(crm_events_dead_lettered_total[1h]))",
                        "{{service}} {{topic}} {{reason}}",
                    )
                ],
                kind="bargauge",
                width=12,
                description="Alert CrmDeadLetters; replay: docs/runbooks/CrmDeadLetters.md.",
            ),
            panel(
                "Dead letters per hour, by reason",
                [target("sum by (reason) (increase(crm_events_dead_lettered_total[1h]))", "{{reason}}")],
                width=12,
            ),
        ],
        [],
    )


def published(event_type: str, window: str = RATE) -> str:
    return f'sum(increase(crm_events_published_total{{event_type="{event_type}"}}[{window}]))'


def business_dashboard() -> dict[str, Any]:
    per_hour = "3600 * sum by (event_type) (rate(crm_events_published_total{{event_type={0}}}[{1}]))"
    return dashboard(
        "crm-business",
        "CRM / business: alerts, saves, complaint SLA",
        [
            row("Retention"),
            panel(
                "Open alerts by tier",
                [target("sum by (tier) (max by (tier, status) (crm_retention_open_alerts))", "{{tier}}")],
                kind="bargauge",
                description="Unresolved alerts (open, acknowledged, snoozed); 'none' has no tier yet.",
            ),
            panel(
                "Open alerts by status",
                [target("sum by (status) (max by (tier, status) (crm_retention_open_alerts))", "{{status}}")],
                kind="piechart",
            ),
            panel(
                "Saves per week",
                [target('max(crm_retention_alerts_resolved_7d{outcome="saved"})', "saved, last 7 days")],
                kind="stat",
                width=8,
            ),
            panel(
                "Resolutions in the last 7 days by outcome",
                [target("max by (outcome) (crm_retention_alerts_resolved_7d)", "{{outcome}}")],
                kind="bargauge",
                width=8,
            ),
            panel(
                "Save rate (saved / resolved, 7 days)",
                [
                    target(
                        'max(crm_retention_alerts_resolved_7d{outcome="saved"})'
                        " / sum(max by (outcome) (crm_retention_alerts_resolved_7d))",
                        "save rate",
                    )
                ],
                kind="stat",
                unit="percentunit",
                width=8,
            ),
            panel(
                "Alerts raised and rescorings per hour",
                [
                    target(per_hour.format('"alert.raised"', RATE), "alerts raised / h"),
                    target(per_hour.format('"score.updated"', RATE), "rescorings / h"),
                ],
                unit="short",
                width=24,
                description="From the relays: events the broker acknowledged "
                "(alert.raised by retention, score.updated by scoring).",
            ),
            row("Complaints"),
            panel(
                "Complaint SLA breaches per day",
                [target(published("complaint.overdue", "1d"), "breaches, last 24 h")],
                kind="stat",
                width=8,
            ),
            panel(
                "SLA breaches per hour",
                [target(per_hour.format('"complaint.overdue"', RATE), "breaches / h")],
                width=8,
            ),
            panel(
                "Overdue complaints still open, by severity",
                [target("max by (severity) (crm_interaction_complaints_overdue)", "{{severity}}")],
                kind="bargauge",
                width=8,
            ),
            panel(
                "Complaints opened per hour",
                [target(per_hour.format('"complaint.opened"', RATE), "opened / h")],
                width=24,
            ),
        ],
        [],
    )


DASHBOARDS = {
    "crm-services.json": services_dashboard,
    "crm-pipeline.json": pipeline_dashboard,
    "crm-business.json": business_dashboard,
}


def rendered() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def configmap(files: dict[str, str]) -> str:
    """The dashboards as a ConfigMap for Grafana's sidecar (label grafana_dashboard=1); see deploy/k8s/README.md."""
    lines = [
        "# Generated by deploy/grafana/dashboards.py; do not edit. Grafana's dashboard sidecar (kube-prometheus-stack,",
        "# grafana helm chart: sidecar.dashboards.enabled) loads ConfigMaps labelled grafana_dashboard=1.",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: crm-grafana-dashboards",
        "  namespace: crm",
        "  labels:",
        '    grafana_dashboard: "1"',
        "    app.kubernetes.io/part-of: crm-retention",
        "data:",
    ]
    for name, text in files.items():
        lines.append(f"  {name}: |")
        lines.extend(f"    {line}" if line else "" for line in text.splitlines())
    return "\n".join(lines) + "\n"


def main() -> None:
    files = rendered()
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT_DIR / name).write_text(text)
    CONFIGMAP.write_text(configmap(files))
    print(f"wrote {len(files)} dashboards and {CONFIGMAP.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
