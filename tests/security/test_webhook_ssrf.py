"""Webhook SSRF (issue 20, finding 8), through the gateway against the real retention service.

The test platform allow-lists only 127.0.0.0/8 (its receivers listen there); every other non-public
target must be refused at creation with a 422 naming the url. That the default (no allow-list)
refuses loopback too, and that delivery re-checks the resolved address and records only a coarse
error, is proven in tests/unit/retention/test_delivery.py and test_api_loop.py.
"""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e

TARGETS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # cloud metadata
    "http://10.0.0.1:6379/",  # private ranges
    "http://172.16.5.4/hook",
    "http://192.168.0.1/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://0.0.0.0:8000/",
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
    "http://[fe80::1]/hook",  # IPv6 link-local
    "http://[fd12:3456::1]/hook",  # IPv6 unique local
    "http://224.0.0.1/hook",  # multicast
]


@pytest.mark.parametrize("url", TARGETS)
async def test_a_webhook_to_an_internal_or_metadata_address_is_refused_with_422_on_url(
    gateway: httpx.AsyncClient, url: str
):
    response = await gateway.post("/api/v1/webhooks", json={"url": url, "secret": "s" * 32})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["url"]
    listed = (await gateway.get("/api/v1/webhooks", params={"limit": 200})).json()["items"]
    assert url not in {h["url"] for h in listed}
