"""The dashboards and alert rules that ship with the platform are current, well formed, tested and documented."""

from __future__ import annotations

from importlib import import_module

import yaml
from prometheus_client import REGISTRY, generate_latest

from servicekit.settings import REPO_ROOT
from tests.unit.ops.observability import (
    DASHBOARD_DIR,
    RULE_TESTS_DIR,
    dashboards,
    exported_sample_names,
    load_script,
    metrics_in,
    panels,
    referenced_metrics,
    rules,
)

GENERATOR = load_script(REPO_ROOT / "deploy" / "grafana" / "dashboards.py")
K8S_RULES = load_script(REPO_ROOT / "deploy" / "prometheus" / "k8s_rules.py")
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "piechart"}


def test_dashboard_files_and_configmap_are_generated_from_the_current_code() -> None:
    files = GENERATOR.rendered()
    assert sorted(files) == sorted(p.name for p in DASHBOARD_DIR.glob("*.json")), (
        "run: python deploy/grafana/dashboards.py"
    )
    for name, text in files.items():
        assert (DASHBOARD_DIR / name).read_text() == text, f"{name} is stale: run python deploy/grafana/dashboards.py"
    assert GENERATOR.CONFIGMAP.read_text() == GENERATOR.configmap(files), "run: python deploy/grafana/dashboards.py"


def test_dashboards_have_the_structure_grafana_loads() -> None:
    datasource = yaml.safe_load((REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    uids = set()
    for name, dashboard in dashboards().items():
        assert {"uid", "title", "panels", "schemaVersion", "templating", "time"} <= set(dashboard), name
        assert dashboard["uid"] not in uids and len(dashboard["uid"]) <= 40
        uids.add(dashboard["uid"])
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert all(isinstance(grid[k], int) for k in ("x", "y", "w", "h")), (name, panel["title"])
            assert grid["w"] > 0 and grid["x"] + grid["w"] <= 24, (name, panel["title"])
        for panel in panels(dashboard):
            assert panel["type"] in PANEL_TYPES, (name, panel["title"])
            assert panel["title"] and panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid, (name, panel["title"])
                assert target["expr"].strip() and target["refId"], (name, panel["title"])
                assert metrics_in(target["expr"]), f"{name}: {panel['title']} names no metric"


def test_dashboards_cover_the_signals_operations_asked_for() -> None:
    used = set().union(*referenced_metrics().values())
    for metric in (
        "crm_http_request_duration_seconds_bucket",  # latency
        "crm_http_request_duration_seconds_count",  # rate and errors
        "process_cpu_seconds_total",  # saturation
        "crm_consumer_lag",
        "crm_outbox_oldest_age_seconds",
        "crm_outbox_backlog",
        "crm_events_dead_lettered_total",
        "crm_events_published_total",  # rescoring, alert and SLA breach rates
        "crm_retention_open_alerts",
        "crm_retention_alerts_resolved_7d",
        "crm_interaction_complaints_overdue",
    ):
        assert metric in used, metric


def test_dashboards_and_rules_name_only_metrics_the_code_declares() -> None:
    # Every module that defines metrics, as the processes import them.
    for module in (
        "servicekit.metrics",
        "gateway.metrics",
        "services.retention.metrics",
        "services.interaction.metrics",
    ):
        import_module(module)
    declared = exported_sample_names(generate_latest(REGISTRY).decode())
    for source, names in referenced_metrics().items():
        assert names <= declared, f"{source} uses metrics nobody exports: {sorted(names - declared)}"


def test_every_rule_has_a_runbook_and_a_promtool_test() -> None:
    rule_tests = "\n".join(p.read_text() for p in RULE_TESTS_DIR.glob("*.yml"))
    for rule in rules():
        name = rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks/{name}.md"
        runbook = REPO_ROOT / "docs" / "runbooks" / f"{name}.md"
        assert runbook.is_file(), f"missing {runbook}"
        text = runbook.read_text()
        for section in ("## What it means", "## How to look", "## How to fix"):
            assert section in text, f"{runbook.name} lacks {section!r}"
        assert f"alertname: {name}\n" in rule_tests, f"no promtool test for {name}"


def test_the_kubernetes_prometheus_rule_carries_the_same_rules() -> None:
    manifest = K8S_RULES.MANIFEST.read_text()
    assert manifest == K8S_RULES.manifest(), "run: python deploy/prometheus/k8s_rules.py"
    assert [r["alert"] for g in yaml.safe_load(manifest)["spec"]["groups"] for r in g["rules"]] == [
        r["alert"] for r in rules()
    ]
