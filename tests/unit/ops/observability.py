"""Shared by the unit and e2e checks of the dashboards and alert rules: load them, list the metrics they name."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from servicekit.settings import REPO_ROOT

DASHBOARD_DIR = REPO_ROOT / "deploy" / "grafana" / "dashboards"
RULES_DIR = REPO_ROOT / "deploy" / "prometheus" / "rules"
RULE_TESTS_DIR = REPO_ROOT / "deploy" / "prometheus" / "tests"
# Prometheus' own series, not exported by the platform.
PROMETHEUS_OWN = {"up"}
# Every metric of the platform is crm_*; process_* come from prometheus_client's process collector.
_METRIC = re.compile(r"(?<![\w-])(crm_[a-z0-9_]+|process_[a-z_]+|up)(?![\w-])")


def load_script(path: Path) -> ModuleType:
    """A deploy/ script (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for p in sorted(RULES_DIR.glob("*.yml"))
        for g in yaml.safe_load(p.read_text())["groups"]
        for rule in g["rules"]
    ]


def metrics_in(expr: str) -> set[str]:
    # Label matchers' values are quoted; drop them so a value like "crm-scoring" never reads as a metric.
    return set(_METRIC.findall(re.sub(r'"[^"]*"', '""', expr)))


def referenced_metrics() -> dict[str, set[str]]:
    """Sample names (with _bucket/_count/_total...) each dashboard and the rules use."""
    found: dict[str, set[str]] = {}
    for name, dashboard in dashboards().items():
        exprs = [t["expr"] for p in panels(dashboard) for t in p["targets"]]
        exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
        found[name] = set().union(*(metrics_in(e) for e in exprs)) - PROMETHEUS_OWN
    found["alert rules"] = set().union(*(metrics_in(r["expr"]) for r in rules())) - PROMETHEUS_OWN
    return found


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
    "untyped": ("",),
}


def exported_sample_names(exposition: str) -> set[str]:
    """Every sample name a Prometheus text exposition declares, from its # TYPE lines: a labelled metric
    with no series yet (no dead letter so far) still has its TYPE line, so it counts as exported."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            base = family.removesuffix("_total") if kind == "counter" else family
            names.update(base + suffix for suffix in _SUFFIXES.get(kind, ("",)))
    return names
