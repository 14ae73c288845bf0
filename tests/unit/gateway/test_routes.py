import pytest

from gateway.routes import GATEWAY, ROUTES, Resolved, resolve


@pytest.mark.parametrize(
    ("path", "service", "upstream"),
    [
        # customer
        ("/api/v1/customers", "customer", "/customers"),
        ("/api/v1/customers/c-1", "customer", "/customers/c-1"),
        ("/api/v1/customers/c-1/status", "customer", "/customers/c-1/status"),
        ("/api/v1/customers/bulk", "customer", "/customers/bulk"),
        ("/api/v1/customers/c-1/erasure", "customer", "/customers/c-1/erasure"),
        # customer sub-resources owned by other services
        ("/api/v1/customers/c-1/interactions", "interaction", "/customers/c-1/interactions"),
        ("/api/v1/customers/c-1/scores", "scoring", "/customers/c-1/scores"),
        ("/api/v1/customers/c-1/scores/history", "scoring", "/customers/c-1/scores/history"),
        ("/api/v1/customers/c-1/360", GATEWAY, "/customers/c-1/360"),
        # interaction
        ("/api/v1/interactions", "interaction", "/interactions"),
        ("/api/v1/interactions/bulk", "interaction", "/interactions/bulk"),
        ("/api/v1/interactions/i-9", "interaction", "/interactions/i-9"),
        ("/api/v1/complaints", "interaction", "/complaints"),
        ("/api/v1/complaints/k-1/transitions", "interaction", "/complaints/k-1/transitions"),
        ("/api/v1/integrations/parked", "interaction", "/integrations/parked"),
        # scoring
        ("/api/v1/scores", "scoring", "/scores"),
        ("/api/v1/models", "scoring", "/models"),
        ("/api/v1/models/value/refit", "scoring", "/models/value/refit"),
        ("/api/v1/models/churn/train", "scoring", "/models/churn/train"),
        ("/api/v1/models/m-3/activate", "scoring", "/models/m-3/activate"),
        ("/api/v1/jobs/j-1", "scoring", "/jobs/j-1"),
        # retention
        ("/api/v1/alerts", "retention", "/alerts"),
        ("/api/v1/alerts/stream", "retention", "/alerts/stream"),
        ("/api/v1/alerts/a-1/acknowledge", "retention", "/alerts/a-1/acknowledge"),
        ("/api/v1/rules/r-1/preview", "retention", "/rules/r-1/preview"),
        ("/api/v1/playbooks", "retention", "/playbooks"),
        ("/api/v1/tasks/t-1/complete", "retention", "/tasks/t-1/complete"),
        ("/api/v1/retention/metrics", "retention", "/retention/metrics"),
        ("/api/v1/webhooks", "retention", "/webhooks"),
    ],
)
def test_public_path_resolves_to_owning_service_and_its_path(path: str, service: str, upstream: str) -> None:
    assert resolve(path) == Resolved(service, upstream)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1",
        "/api/v1/",
        "/api/v2/customers",
        "/customers",
        "/health/ready",
        "/api/v1/unknown",
        "/api/v1/customersx",
        "/api/v1/Customers",
        "/api/v1/api/v1/customers",
    ],
)
def test_unknown_paths_resolve_to_none(path: str) -> None:
    assert resolve(path) is None


def test_longer_customer_subpath_wins_over_customer_prefix() -> None:
    # Without most-specific-first ordering the customer prefix would swallow these.
    assert resolve("/api/v1/customers/c-1/interactions/recent") == Resolved(
        "interaction", "/customers/c-1/interactions/recent"
    )
    assert resolve("/api/v1/customers/c-1/scoresheet") == Resolved("customer", "/customers/c-1/scoresheet")


def test_customer_id_named_like_a_subresource_still_goes_to_customer() -> None:
    assert resolve("/api/v1/customers/interactions") == Resolved("customer", "/customers/interactions")
    assert resolve("/api/v1/customers/scores") == Resolved("customer", "/customers/scores")


def test_360_is_gateway_owned_only_at_its_exact_path() -> None:
    resolved = resolve("/api/v1/customers/c-1/360")
    assert resolved is not None and resolved.service == GATEWAY
    assert resolve("/api/v1/customers/c-1/360/extra") == Resolved("customer", "/customers/c-1/360/extra")


def test_trailing_slash_is_dropped_from_upstream_path() -> None:
    assert resolve("/api/v1/customers/") == Resolved("customer", "/customers")
    assert resolve("/api/v1/customers/c-1/scores/") == Resolved("scoring", "/customers/c-1/scores")


def test_percent_encoding_is_kept_for_the_service() -> None:
    assert resolve("/api/v1/customers/a%20b") == Resolved("customer", "/customers/a%20b")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/customers/../alerts",
        "/api/v1/customers/%2e%2e/alerts",
        "/api/v1/customers/%2E%2E",
        "/api/v1/customers/./c-1",
        "/api/v1/customers/a%2Fb/scores",
        "/api/v1/customers/a%5Cb",
        "/api/v1/customers//scores",
    ],
)
def test_dot_segments_encoded_slashes_and_empty_segments_are_refused(path: str) -> None:
    assert resolve(path) is None


def test_table_is_ordered_most_specific_first() -> None:
    lengths = [len(r.pattern) for r in ROUTES]
    assert lengths == sorted(lengths, reverse=True)
