"""Gateway state that must hold across replicas (issue 20, findings 6 and 11), on real PostgreSQL.

Two gateway apps share one PostgreSQL database, as two pods of deploy/k8s do: an API key created
through one works on the other and its revocation reaches the other within the key cache's TTL; one
caller's quota is one quota over both; failed authentications are throttled per source address and
per presented key id over both, with 429 and Retry-After before any further credential is checked.
Each app gets its own client address through the ASGI transport, so sources can differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from gateway.__main__ import issue_token
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.platform import new_database

pytestmark = pytest.mark.e2e

Replicas = Callable[..., Any]


@pytest.fixture
async def replicas(postgres: None) -> AsyncIterator[Replicas]:
    """start(**settings) -> two gateway apps on one fresh PostgreSQL database, and a client factory."""
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(new_database())

        async def start(**overrides: Any) -> tuple[Any, Any]:
            settings = {"database_url": url, "api_key_cache_s": 1.0, **overrides}
            apps = [create_app(GatewaySettings(**settings)) for _ in range(2)]
            for app in apps:  # one after the other: the first migrates, the second finds the schema at head
                await stack.enter_async_context(app.router.lifespan_context(app))

            def client(app: Any, source: str = "10.1.0.1", **headers: str) -> httpx.AsyncClient:
                transport = httpx.ASGITransport(app=app, client=(source, 40000))
                return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers)

            return apps, client

        yield start


def _admin(sub: str = "sec-admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(GatewaySettings(), sub=sub, role='admin', ttl_s=600)}"}


async def test_a_key_created_through_one_replica_works_on_the_other_and_a_revocation_reaches_it(
    replicas: Replicas,
) -> None:
    (one, two), client = await replicas(api_key_cache_s=1.0)
    async with client(one, **_admin()) as admin_one, client(two) as on_two:
        created = await admin_one.post("/api/v1/keys", json={"name": "ops", "role": "admin"})
        assert created.status_code == 201, created.text
        key = {"X-API-Key": created.json()["key"]}

        # Known on the other replica at once: both read the same table.
        assert (await on_two.get("/api/v1/keys", headers=key)).status_code == 200
        assert (await admin_one.delete(f"/api/v1/keys/{created.json()['id']}")).status_code == 204
        revoked_at = time.monotonic()

        # Refused on the other replica within its cache TTL (1 s here; GATEWAY_API_KEY_CACHE_S).
        while (await on_two.get("/api/v1/keys", headers=key)).status_code != 401:
            assert time.monotonic() - revoked_at < 1.0 + 0.5, "the revoked key still works on the other replica"
            await asyncio.sleep(0.05)


async def test_two_replicas_enforce_one_quota_per_caller(replicas: Replicas) -> None:
    # 2 requests/s with bursts of 4, for the caller over both replicas together.
    (one, two), client = await replicas(rate_limits={"admin": 2.0}, rate_burst_factor=2.0)
    headers = _admin("quota-admin")
    async with client(one, **headers) as on_one, client(two, **headers) as on_two:
        responses = [await c.get("/api/v1/keys") for _ in range(4) for c in (on_one, on_two)]

    statuses = [r.status_code for r in responses]
    # Per-process buckets would have allowed 4 on each replica (8 in all).
    assert statuses.count(200) == 4, statuses
    limited = [r for r in responses if r.status_code == 429]
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert limited[0].headers["content-type"] == "application/problem+json"


async def test_bad_tokens_from_one_source_get_429_before_a_valid_credential_is_checked(replicas: Replicas) -> None:
    (one, two), client = await replicas(auth_failures=5, auth_failures_per_minute=6)
    bad = {"Authorization": "Bearer not-a-token"}
    async with client(one, "10.2.0.1") as attacker_one, client(two, "10.2.0.1") as attacker_two:
        # Five wrong tokens spread over both replicas: each answered 401.
        statuses = [(await c.get("/api/v1/keys", headers=bad)).status_code for c in (attacker_one, attacker_two) * 2]
        statuses.append((await attacker_one.get("/api/v1/keys", headers=bad)).status_code)
        assert statuses == [401] * 5
        # The sixth, on the other replica, is over the source's shared allowance.
        refused = await attacker_two.get("/api/v1/keys", headers=bad)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        # From now on that source is refused before its credential is looked at, even a valid one.
        valid = await attacker_two.get("/api/v1/keys", headers=_admin())
        assert valid.status_code == 429
        assert int(valid.headers["retry-after"]) >= 1
    # Another source is not affected.
    async with client(two, "10.2.0.2", **_admin()) as bystander:
        assert (await bystander.get("/api/v1/keys")).status_code == 200


async def test_guessing_one_keys_secret_from_many_sources_is_throttled_per_key_id(replicas: Replicas) -> None:
    (one, two), client = await replicas(auth_failures=3, auth_failures_per_minute=6)
    async with client(one, **_admin()) as admin:
        created = (await admin.post("/api/v1/keys", json={"name": "erp", "role": "admin"})).json()
    key_id, right = created["id"], created["key"]
    guesses = [f"crmk_{key_id}_guess{n}" for n in range(4)]
    statuses = []
    for n, guess in enumerate(guesses):  # a fresh source address each time
        async with client((one, two)[n % 2], f"10.3.0.{n + 1}") as attacker:
            statuses.append((await attacker.get("/api/v1/keys", headers={"X-API-Key": guess})).status_code)
    assert statuses == [401, 401, 401, 429]
    # The key id is now throttled on the replica that saw it: the right secret is not even checked.
    async with client(two, "10.3.0.99") as someone:
        response = await someone.get("/api/v1/keys", headers={"X-API-Key": right})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
