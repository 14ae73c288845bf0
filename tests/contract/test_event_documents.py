"""The checked-in event documents (docs/events) are what the contract code generates."""

from __future__ import annotations

import importlib
import re
from typing import Any

import yaml

from contracts import asyncapi as docs
from contracts import topics
from contracts.registry import REGISTRY
from servicekit.events.envelope import CloudEvent
from servicekit.settings import REPO_ROOT


def test_the_checked_in_event_documents_match_the_contracts():
    stale = docs.differences()
    assert not stale, f"docs/events is out of date ({', '.join(stale)}): run `make docs` and commit the result"


def test_generating_twice_gives_the_same_bytes():
    assert docs.documents() == docs.documents()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_in_the_asyncapi_document_resolves_and_every_topic_has_a_channel():
    document = yaml.safe_load(docs.documents()[docs.ASYNCAPI_FILE])
    for ref in _refs(document):
        node = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]
    for topic in topics.ALL:
        assert topic in document["channels"] and topics.dead_letter(topic) in document["channels"]


def test_each_event_schema_names_the_envelope_dataschema_and_the_required_fields():
    for model in REGISTRY:
        schema = docs.event_schema(model)
        required = {name for name, field in model.model_fields.items() if field.is_required()}
        assert set(schema.get("required", [])) == required, model.event_type
        assert schema["x-topic"] == model.topic
        assert f"schemas/{model.event_type}.json" in docs.documents()
    from contracts.erp import ErpOrderPlaced

    event = ErpOrderPlaced(order_id="O-1", customer_ref="ERP-1", amount="1", currency="EUR", placed_at="2026-01-01")
    assert CloudEvent.wrap(event, source="/erp").dataschema == docs.event_schema(ErpOrderPlaced)["$id"]


def test_the_topic_table_in_the_event_docs_matches_the_registry_and_the_service_declarations():
    expected: dict[str, tuple[list[str], list[str]]] = {
        topic: ([m.event_type for m in REGISTRY if m.topic == topic], []) for topic in topics.ALL
    }
    for service in ("customer", "interaction", "scoring", "retention"):
        for topic in importlib.import_module(f"services.{service}.main").SPEC.consumes:
            expected[topic][1].append(service)

    text = (REPO_ROOT / "docs" / "events" / "README.md").read_text()
    text = text.split("## Envelope and topics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9.]+)` \| (.*?) \| (.*?) \|$", text, flags=re.MULTILINE)
    documented = {
        topic: (re.findall(r"`([a-z_.]+)`", types), [] if users == "outside systems" else users.split(", "))
        for topic, types, users in rows
    }
    assert documented == expected
