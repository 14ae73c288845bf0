"""Prometheus metrics shared by every process; each series carries the service name."""

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

HTTP_LATENCY = Histogram(
    "crm_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_HANDLED = Counter("crm_events_handled_total", "Events whose handler committed", ["service", "event_type"])
EVENTS_DUPLICATE = Counter(
    "crm_events_duplicate_total", "Deliveries skipped because the inbox had the event already", ["service"]
)
EVENTS_FAILED = Counter("crm_events_failed_total", "Handler attempts that raised", ["service", "event_type"])
# reason: a small fixed set (servicekit.inbox.delivery.DLQ_REASONS), never the free-text error.
DEAD_LETTERED = Counter(
    "crm_events_dead_lettered_total", "Messages sent to a dead-letter topic", ["service", "topic", "reason"]
)
CONSUMER_LAG = Gauge(
    "crm_consumer_lag", "Messages behind the partition's high watermark", ["service", "topic", "partition"]
)
OUTBOX_BACKLOG = Gauge("crm_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_PUBLISHED = Counter("crm_outbox_published_total", "Outbox rows published to Kafka", ["service"])
# By CloudEvents type (the row's ce_type header): alert.raised, score.updated, complaint.overdue... are the
# business rates the dashboards show, counted once the broker acknowledged them.
EVENTS_PUBLISHED = Counter(
    "crm_events_published_total", "Events the outbox relay published, by event type", ["service", "event_type"]
)
OUTBOX_OLDEST_AGE = Gauge(
    "crm_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0: none waiting)", ["service"]
)
OUTBOX_ROUND_ROWS = Histogram(
    "crm_outbox_publish_round_rows",
    "Outbox rows one relay round read and published (a round: one read, one produce request, one mark)",
    ["service"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
OUTBOX_DELAY = Histogram(
    "crm_outbox_publish_delay_seconds",
    "From outbox commit to broker acknowledgement",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
# Set by each /health/ready answer (orchestrators probe it every few seconds): 1 ready, 0 not.
READY = Gauge("crm_ready", "1 when the last readiness check passed", ["service"])
READY_CHECK = Gauge("crm_ready_check", "1 when the check passed in the last readiness check", ["service", "check"])


def record_readiness(service: str, ok: bool, checks: dict[str, dict[str, Any]]) -> None:
    """Export a /health/ready answer as crm_ready / crm_ready_check, for the ReadinessFailing alert."""
    READY.labels(service).set(1 if ok else 0)
    for name, check in checks.items():
        READY_CHECK.labels(service, name).set(1 if check.get("ok") else 0)


def set_gauges(gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
    """Set a labelled gauge to a fresh snapshot (e.g. a GROUP BY count): series not in it go to 0, so a
    tier whose last alert closed shows 0 instead of its old count."""
    for labels, _ in list(_known_labels(gauge)):
        if labels not in values:
            gauge.labels(*labels).set(0)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)


def _known_labels(gauge: Gauge) -> list[tuple[tuple[str, ...], object]]:
    # prometheus_client keeps a labelled metric's children in _metrics; reading it is the only way to list them.
    return [(tuple(labels), child) for labels, child in gauge._metrics.items()]
