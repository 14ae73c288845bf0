"""The event contracts as documents for other teams: an AsyncAPI document and one JSON Schema per event type.

    python -m contracts.asyncapi            # (re)write docs/events/
    python -m contracts.asyncapi --check    # exit 1 if docs/events/ differs from the code

Generated from the pydantic contracts in contracts/, so the documents cannot drift
from what producers send and consumers accept (tests/contract/test_event_documents.py checks it).
The output is deterministic: topics and event types sorted, keys in a fixed order.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

import contracts  # noqa: F401 - registers every contract in REGISTRY
from contracts import erp, topics
from contracts.registry import REGISTRY
from servicekit.events.envelope import CONTENT_TYPE, EventData
from servicekit.settings import REPO_ROOT

DOCS_DIR = REPO_ROOT / "docs" / "events"
ASYNCAPI_FILE = "asyncapi.yaml"
SCHEMA_DIR = "schemas"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
COMPONENT_REF = "#/components/schemas/{model}"

# Topics other systems publish and the platform consumes; every other topic is published by a service.
INBOUND_TOPICS = frozenset(model.topic for model in (*erp.MODELS, *erp.CONSENT_MODELS, *erp.LOYALTY_MODELS))

TOPIC_DESCRIPTIONS = {
    topics.CUSTOMER: "Customer master changes, published by the customer service. Ids, references and "
    "classification only: no names or contact details.",
    topics.INTERACTION: "Interactions, complaints and survey answers, published by the interaction service.",
    topics.SCORING: "Score changes (churn risk, health, value), published by the scoring service.",
    topics.RETENTION: "Churn alerts and retention tasks, published by the retention service.",
    topics.ERASURE: "Erasure receipts: each service confirms it removed a customer's personal data.",
    topics.ERP_ORDERS: "Orders placed and cancelled, published by the ERP. Each becomes an interaction.",
    topics.ERP_RETURNS: "Returns, published by the ERP. Each becomes a return interaction.",
    topics.SCM_SHIPMENTS: "Shipment problems (delayed, lost, damaged), published by SCM. Each becomes a "
    "delivery complaint.",
    topics.ERP_CONSENTS: "Consent changes (opt-in, opt-out per channel), published by the ERP or a marketing "
    "system. The customer service applies each to the customer's consent record.",
    topics.ERP_LOYALTY: "Loyalty points earned, redeemed or expired, published by the ERP. The customer service "
    "adds each to the customer's points ledger.",
}


def schema_id(model: type[EventData]) -> str:
    """The JSON Schema id, equal to the envelope's `dataschema` (see CloudEvent.wrap)."""
    return f"urn:crm:event:{model.event_type}:v{model.schema_version}"


def _models() -> list[type[EventData]]:
    return sorted(REGISTRY, key=lambda m: m.event_type)


def _key_of(model: type[EventData]) -> str:
    if model.topic in INBOUND_TOPICS:
        return "the customer's reference in the ERP (customer_ref); also the CloudEvents subject"
    return "the customer id; also the CloudEvents subject"


def event_schema(model: type[EventData]) -> dict[str, Any]:
    """The self-contained JSON Schema of one event type's data."""
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(model),
        "x-event-type": model.event_type,
        "x-topic": model.topic,
        "x-schema-version": model.schema_version,
        **schema,
    }


def envelope_schema() -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode envelope every message uses; `data` is per event type."""
    return {
        "type": "object",
        "description": "CloudEvents 1.0 in structured JSON mode. Unknown attributes are allowed (CloudEvents "
        "extensions); consumers ignore unknown data fields, so contracts grow additively.",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": {"type": "string", "const": "1.0"},
            "id": {"type": "string", "minLength": 1, "description": "unique per event; consumers de-duplicate by it"},
            "source": {"type": "string", "minLength": 1, "description": "the producer, e.g. /crm/interaction"},
            "type": {"type": "string", "minLength": 1, "description": "the event type, e.g. customer.created"},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string", "description": "the Kafka key: whom the event is about"},
            "datacontenttype": {"type": "string", "const": "application/json"},
            "dataschema": {"type": "string", "description": "urn:crm:event:<type>:v<version>"},
            "correlationid": {
                "type": "string",
                "description": "request id that caused the event; the trace id while tracing is on",
            },
            "traceparent": {
                "type": "string",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "CloudEvents distributed-tracing extension: the W3C trace context of the span "
                "that wrote the event (only while tracing is on)",
            },
            "tracestate": {
                "type": "string",
                "description": "CloudEvents distributed-tracing extension: W3C tracestate, with traceparent",
            },
            "data": {"type": "object"},
        },
    }


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """Move a schema's $defs into the AsyncAPI components (they are referenced there)."""
    schema = dict(schema)
    for name, definition in schema.pop("$defs", {}).items():
        if name in into and into[name] != definition:
            raise ValueError(f"two contracts define {name!r} differently; rename one of them")
        into[name] = definition
    return schema


def asyncapi() -> dict[str, Any]:
    schemas: dict[str, Any] = {"CloudEvent": envelope_schema()}
    messages: dict[str, Any] = {}
    by_topic: dict[str, list[type[EventData]]] = {}
    for model in _models():
        by_topic.setdefault(model.topic, []).append(model)
        data = _hoist(model.model_json_schema(mode="validation", ref_template=COMPONENT_REF), schemas)
        schemas[model.event_type] = data
        messages[model.event_type] = {
            "name": model.event_type,
            "title": model.__name__,
            "summary": (model.__doc__ or f"{model.event_type} on {model.topic}").strip().splitlines()[0],
            "contentType": CONTENT_TYPE,
            "headers": {
                "type": "object",
                "properties": {
                    "content-type": {"type": "string", "const": CONTENT_TYPE},
                    "ce_type": {"type": "string", "const": model.event_type},
                    "ce_id": {"type": "string", "description": "the envelope's id"},
                    "traceparent": {
                        "type": "string",
                        "description": "W3C trace context of the relay's publish span (only while tracing is on)",
                    },
                    "tracestate": {"type": "string", "description": "W3C tracestate, with traceparent"},
                },
            },
            "bindings": {"kafka": {"key": {"type": "string", "description": _key_of(model)}}},
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": model.event_type},
                            "dataschema": {"const": schema_id(model)},
                            "data": {"$ref": f"#/components/schemas/{model.event_type}"},
                        },
                    },
                ]
            },
        }
    messages["dead-letter"] = {
        "name": "dead-letter",
        "title": "Dead letter",
        "summary": "A message a consumer could not handle, with its original bytes, key and headers.",
        "headers": {
            "type": "object",
            "properties": {
                "dlq.reason": {"type": "string", "description": "why it could not be handled"},
                "dlq.consumer": {"type": "string", "description": "the consumer group that gave up"},
                "dlq.origin": {"type": "string", "description": "topic/partition/offset of the original"},
            },
        },
        "payload": {"description": "the original message, unchanged"},
    }

    channels: dict[str, Any] = {}
    for topic in sorted(by_topic):
        inbound = topic in INBOUND_TOPICS
        refs = [{"$ref": f"#/components/messages/{m.event_type}"} for m in by_topic[topic]]
        operation = {
            "operationId": ("publish_" if inbound else "receive_") + topic.replace(".", "_"),
            "summary": (
                "Other systems publish these; the platform consumes them."
                if inbound
                else "The platform publishes these; subscribe to receive them."
            ),
            "message": {"oneOf": refs} if len(refs) > 1 else refs[0],
        }
        # AsyncAPI 2.x speaks from the client's side: `publish` = clients send, `subscribe` = clients receive.
        channels[topic] = {
            "description": TOPIC_DESCRIPTIONS.get(topic, topic),
            ("publish" if inbound else "subscribe"): operation,
        }
        channels[topics.dead_letter(topic)] = {
            "description": f"Dead letters of {topic}: messages a consumer could not handle, for operators.",
            "subscribe": {
                "operationId": "receive_" + topics.dead_letter(topic).replace(".", "_"),
                "message": {"$ref": "#/components/messages/dead-letter"},
            },
        }

    return {
        "asyncapi": "2.6.0",
        "id": "urn:crm-retention:events",
        "info": {
            "title": "Customer-retention platform events",
            "version": "1",
            "description": "Every topic the platform publishes or consumes. Each message is a CloudEvents 1.0 "
            "envelope in structured JSON mode whose `data` follows the event type's JSON Schema (also in "
            "docs/events/schemas/). Topics are versioned; contracts change additively, and a breaking change "
            "is a new event type. Generated by `python -m contracts.asyncapi` from "
            "contracts/; do not edit by hand.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "url": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local broker of `make run`.",
            }
        },
        "channels": channels,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def documents() -> dict[str, str]:
    """Relative path (under docs/events) -> the file's text."""
    header = "# Generated by `python -m contracts.asyncapi` (make docs) from contracts/.\n"
    out = {ASYNCAPI_FILE: header + yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=120)}
    for model in _models():
        out[f"{SCHEMA_DIR}/{model.event_type}.json"] = _json(event_schema(model))
    out[f"{SCHEMA_DIR}/cloudevent.json"] = _json(
        {"$schema": JSON_SCHEMA_DIALECT, "$id": "urn:crm:cloudevent", "title": "CloudEvent", **envelope_schema()}
    )
    return out


def differences(out_dir: Path = DOCS_DIR) -> list[str]:
    """Files under out_dir that are missing, stale, or no longer generated."""
    wanted = documents()
    stale = [p for p, text in wanted.items() if not (out_dir / p).is_file() or (out_dir / p).read_text() != text]
    generated = set(wanted)
    extra = [str(p.relative_to(out_dir)) for p in _existing(out_dir) if str(p.relative_to(out_dir)) not in generated]
    return sorted(stale + extra)


def _existing(out_dir: Path) -> Iterable[Path]:
    if (out_dir / ASYNCAPI_FILE).is_file():
        yield out_dir / ASYNCAPI_FILE
    schema_dir = out_dir / SCHEMA_DIR
    if schema_dir.is_dir():
        yield from sorted(schema_dir.glob("*.json"))


def write(out_dir: Path = DOCS_DIR) -> list[str]:
    """Write the documents, removing schemas of event types that no longer exist; returns what changed."""
    changed = differences(out_dir)
    wanted = documents()
    for path in _existing(out_dir):
        if str(path.relative_to(out_dir)) not in wanted:
            path.unlink()
    for relative, text in wanted.items():
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.asyncapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the documents are stale")
    parser.add_argument("--out", type=Path, default=DOCS_DIR, help=f"output directory (default {DOCS_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences(args.out)
        if stale:
            print("event documents out of date (run `make docs`): " + ", ".join(stale), file=sys.stderr)
            return 1
        print("event documents up to date", file=sys.stderr)
        return 0
    changed = write(args.out)
    print(f"event documents written to {args.out}; changed: {', '.join(changed) or 'none'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
