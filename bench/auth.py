"""Credentials for load sent through the gateway: a bearer token it accepts and rate limits that do not throttle.

A benchmark measures the platform, not the per-caller rate limiter, so the admin role gets a limit far above
any offered load; the limiter itself still runs on every request, as in production.
"""

from __future__ import annotations

import json

from gateway.__main__ import issue_token
from gateway.settings import GatewaySettings

# Environment for the gateway process (merged into Infra.platform(extra_env=...)).
UNTHROTTLED_ENV = {
    "GATEWAY_RATE_LIMITS": json.dumps(
        {"agent": 20, "manager": 30, "analyst": 20, "admin": 1_000_000, "integration": 200}
    ),
    # Bulk routes also cost rows (gateway.bulk_limits): admins import without a row limit too.
    "GATEWAY_BULK_ROWS_PER_S": json.dumps({"admin": 1_000_000, "integration": 5000, "importer": 20000}),
    # Every benchmark and test client calls from 127.0.0.1, and test suites present wrong credentials on
    # purpose: one source address must not lock the rest of the run out. The throttle itself is proven on
    # gateways of their own (tests/security/test_shared_state.py).
    "GATEWAY_AUTH_FAILURES": "100000",
    "GATEWAY_AUTH_FAILURES_PER_MINUTE": "100000",
}


def bearer_headers(*, role: str = "admin", sub: str = "bench", ttl_s: int = 6 * 3600) -> dict[str, str]:
    """An Authorization header the platform's gateway accepts (same GATEWAY_JWT_SECRET as this process)."""
    return {"Authorization": f"Bearer {issue_token(GatewaySettings(), sub=sub, role=role, ttl_s=ttl_s)}"}
