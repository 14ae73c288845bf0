"""Prometheus metrics shared by every process; each series carries the service name."""

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
DEAD_LETTERED = Counter("crm_events_dead_lettered_total", "Messages sent to a dead-letter topic", ["service", "topic"])
CONSUMER_LAG = Gauge(
    "crm_consumer_lag", "Messages behind the partition's high watermark", ["service", "topic", "partition"]
)
OUTBOX_BACKLOG = Gauge("crm_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_PUBLISHED = Counter("crm_outbox_published_total", "Outbox rows published to Kafka", ["service"])
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
