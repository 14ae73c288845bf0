"""Gateway-only metrics; request latency at the edge comes from servicekit's middleware."""

from prometheus_client import Histogram

UPSTREAM_LATENCY = Histogram(
    "crm_gateway_upstream_duration_seconds",
    "Time from sending a request to a service until its response headers (or a failure)",
    ["service", "method", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
