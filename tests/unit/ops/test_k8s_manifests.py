"""The Kubernetes manifests: valid YAML, every resource in the kustomization, and the scaling rules of
docs/scaling.md (consumer HPAs on lag up to the partition count, one relay per service, PDBs)."""

from __future__ import annotations

from typing import Any

import yaml

from servicekit.settings import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
SERVICES = ("customer", "interaction", "scoring", "retention")


def documents() -> list[dict[str, Any]]:
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    out: list[dict[str, Any]] = []
    for name in resources:
        out.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return out


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def test_every_manifest_is_valid_yaml_and_listed_in_the_kustomization() -> None:
    resources = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    for path in K8S.glob("*.yaml"):
        assert all(isinstance(d, dict) for d in yaml.safe_load_all(path.read_text()) if d is not None), path
    # grafana-dashboards and monitoring need the operator's CRDs; they are applied on their own.
    assert files - resources <= {"grafana-dashboards.yaml", "monitoring.yaml", "prometheus-rules.yaml"}
    assert resources <= files


def test_each_consumer_group_scales_on_its_lag_up_to_the_partition_count() -> None:
    partitions = int(yaml.safe_load((K8S / "config.yaml").read_text())["data"]["KAFKA_PARTITIONS"])
    deployments = by_kind("Deployment")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind("HorizontalPodAutoscaler").values()}
    for service in SERVICES:
        name = f"{service}-consumer"
        hpa = hpas[name]
        assert "replicas" not in deployments[name]["spec"], f"{name}: the HPA owns the replica count"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] == partitions
        [metric] = hpa["spec"]["metrics"]
        assert metric["type"] == "External"
        assert metric["external"]["metric"]["name"] == "crm_consumer_group_lag"
        assert metric["external"]["metric"]["selector"]["matchLabels"] == {"service": service}


def test_each_service_has_exactly_one_relay_replaced_not_rolled() -> None:
    deployments = by_kind("Deployment")
    autoscaled = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind("HorizontalPodAutoscaler").values()}
    for service in SERVICES:
        relay = deployments[f"{service}-relay"]
        assert relay["spec"]["replicas"] == 1
        assert relay["spec"]["strategy"]["type"] == "Recreate"
        assert f"{service}-relay" not in autoscaled


def test_apis_consumers_and_the_gateway_have_a_disruption_budget_that_selects_them() -> None:
    deployments = by_kind("Deployment")
    budgets = list(by_kind("PodDisruptionBudget").values())
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        if name.endswith("-relay"):
            assert not matching, f"{name}: one replica; a budget would block node drains"
        else:
            assert len(matching) == 1, name
