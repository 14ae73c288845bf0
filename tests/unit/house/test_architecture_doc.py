"""docs/architecture.md's picture and folder table, and README.md's folder map, against the code and the tree.

Only the top level and the service level are checked: what is inside a service folder may change without
touching either document."""

from __future__ import annotations

import importlib
import re

import pytest

from contracts import topics
from runner.launcher import SERVICES
from servicekit.settings import REPO_ROOT

ARCHITECTURE = (REPO_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
# Not part of the product's tree: tools' caches and build output (see .gitignore).
NOT_SOURCE = {"build", "dist", "node_modules"}


def _diagram() -> str:
    blocks = re.findall(r"```mermaid\n(.*?)```", ARCHITECTURE, flags=re.DOTALL)
    assert len(blocks) == 1, "docs/architecture.md has one diagram"
    return str(blocks[0])


def _nodes() -> dict[str, str]:
    """node id -> its label."""
    return dict(re.findall(r"^\s*(\w+)[\[({]+([^\])}]+)[\])}]+\s*$", _diagram(), flags=re.MULTILINE))


def _edges() -> set[tuple[str, str]]:
    return set(re.findall(r"^\s*(\w+)\s*-->(?:\|[^|]*\|)?\s*(\w+)\s*$", _diagram(), flags=re.MULTILINE))


def _folders_on_disk() -> set[str]:
    top = {
        f"{p.name}/"
        for p in REPO_ROOT.iterdir()
        if p.is_dir()
        and not p.name.startswith((".", "_"))
        and not p.name.endswith(".egg-info")
        and p.name not in NOT_SOURCE
    }
    services = {f"services/{p.name}/" for p in (REPO_ROOT / "services").iterdir() if p.is_dir() and p.name[0] != "_"}
    return (top - {"services/"}) | services


def test_the_diagram_draws_every_topic_every_service_and_the_gateway() -> None:
    labels = set(_nodes().values())
    assert set(topics.ALL) <= labels
    assert {*SERVICES, "gateway"} <= set(_nodes())


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_arrows_into_a_service_are_the_topics_it_consumes(service: str) -> None:
    nodes = _nodes()
    drawn = {nodes[src] for src, dst in _edges() if dst == service and nodes.get(src) in topics.ALL}
    declared = set(importlib.import_module(f"services.{service}.main").SPEC.consumes)
    assert drawn == declared


def test_every_service_has_its_own_store_and_publishes_through_its_outbox() -> None:
    edges = _diagram()
    for service in SERVICES:
        assert re.search(rf"^\s*{service} --- {service}_db\s*$", edges, flags=re.MULTILINE), service
        assert f"{service} -->|outbox| crm_{service}_v1" in edges, service


def test_the_folder_table_names_every_top_level_and_service_folder() -> None:
    section = ARCHITECTURE.split("## Folders", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_/]+/)` \|", section, flags=re.MULTILINE))
    assert listed == _folders_on_disk()


def test_the_readme_folder_map_names_every_top_level_and_service_folder() -> None:
    section = README.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    listed = set(re.findall(r"^([a-z_]+/(?:[a-z_]+/)?)\s", block, flags=re.MULTILINE))
    assert listed == _folders_on_disk()
