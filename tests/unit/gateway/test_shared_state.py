"""Gateway state shared by replicas (rate buckets, failed-login throttle, key cache) and the audit rules.

Two limiters or key stores over one database file stand for two gateway replicas; tests/security/
test_shared_state.py proves the same on PostgreSQL with whole gateway apps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from gateway.app import create_app
from gateway.audit import audited
from gateway.keys import MIGRATIONS_DIR, ApiKeyCreate, KeyStore
from gateway.lru import LruDict
from gateway.ratelimit import AuthThrottle, Quota, RateLimiter, SharedBuckets, retry_after
from gateway.settings import GatewaySettings, production_problems
from servicekit.auth import InternalAuthSettings
from servicekit.db import Database
from servicekit.migrations import upgrade
from servicekit.production import ProductionConfigError
from servicekit.settings import REPO_ROOT


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await asyncio.to_thread(upgrade, MIGRATIONS_DIR, url, "gateway")
    db = Database(url)
    try:
        yield db
    finally:
        await db.dispose()


def _limiter(database: Database, clock: Clock, rate: float = 2.0, batch_fraction: float = 0.1) -> RateLimiter:
    buckets = SharedBuckets(database, clock=clock)
    return RateLimiter(buckets, {"agent": rate}, burst_factor=2.0, batch_fraction=batch_fraction, clock=clock)


async def test_a_shared_bucket_allows_a_burst_then_the_rate(database: Database) -> None:
    clock = Clock()
    limiter = _limiter(database, clock)  # 2/s, bursts of 4

    assert [await limiter.take("u", "agent") for _ in range(4)] == [0.0] * 4
    assert await limiter.take("u", "agent") == pytest.approx(0.5)
    assert await limiter.take("someone-else", "agent") == 0.0
    clock.now += 0.5
    assert await limiter.take("u", "agent") == 0.0
    assert await limiter.take("u", "agent") > 0


async def test_two_replicas_on_one_database_share_one_quota(database: Database) -> None:
    clock = Clock()
    one, two = _limiter(database, clock), _limiter(database, clock)

    allowed = [await limiter.take("u", "agent") == 0.0 for _ in range(4) for limiter in (one, two)]

    # A per-process limiter would allow 4 on each (8); the shared bucket allows 4 in all.
    assert allowed.count(True) == 4


async def test_a_batch_claimed_by_one_replica_is_never_spent_twice(database: Database) -> None:
    clock = Clock()
    # Batches of half the capacity (2 of 4): each replica spends locally what it claimed.
    one, two = _limiter(database, clock, batch_fraction=0.5), _limiter(database, clock, batch_fraction=0.5)

    results = [await limiter.take("u", "agent") for limiter in (one, two, one, two, one, two)]

    assert [r == 0.0 for r in results] == [True, True, True, True, False, False]


async def test_unspent_batch_tokens_lapse_so_a_replica_cannot_hoard_them(database: Database) -> None:
    clock = Clock()
    limiter = _limiter(database, clock, rate=100.0, batch_fraction=0.1)  # capacity 200, batches of 20
    assert await limiter.take("u", "agent") == 0.0
    clock.now += 2.0  # past the batch's 1 s: the 19 left are gone; the bucket refilled meanwhile
    async with database.sessions() as session:
        before = (await session.execute(_TAT)).scalar_one()
    assert await limiter.take("u", "agent") == 0.0
    async with database.sessions() as session:
        # A new claim of 20 tokens (0.2 s of rate) from now: the lapsed batch was not spent from.
        assert (await session.execute(_TAT)).scalar_one() == pytest.approx(before + 2.0)


class CountingBuckets(SharedBuckets):
    def __init__(self, database: Database, clock: Clock) -> None:
        super().__init__(database, clock=clock)
        self.claims = 0

    async def claim(self, key: str, quota: Quota, want: int) -> tuple[int, float]:
        self.claims += 1
        await asyncio.sleep(0.01)  # a database round trip, during which more requests arrive
        return await super().claim(key, quota, want)


async def test_concurrent_requests_share_one_batch_claim_instead_of_draining_the_bucket(
    database: Database,
) -> None:
    clock = Clock()
    buckets = CountingBuckets(database, clock)
    # 100/s, capacity 200, batches of 20: 50 requests at once need three batches, not fifty.
    limiter = RateLimiter(buckets, {"agent": 100.0}, burst_factor=2.0, batch_fraction=0.1, clock=clock)

    results = await asyncio.gather(*(limiter.take("u", "agent") for _ in range(50)))

    assert results == [0.0] * 50
    assert buckets.claims == 3
    # The bucket was charged for the three batches (60 tokens), so a burst up to capacity still passes.
    more = await asyncio.gather(*(limiter.take("u", "agent") for _ in range(140)))
    assert more.count(0.0) == 140


async def test_a_cancelled_request_does_not_cancel_the_claim_others_wait_for(database: Database) -> None:
    clock = Clock()
    limiter = RateLimiter(CountingBuckets(database, clock), {"agent": 100.0}, burst_factor=2.0, clock=clock)
    first = asyncio.ensure_future(limiter.take("u", "agent"))
    second = asyncio.ensure_future(limiter.take("u", "agent"))
    await asyncio.sleep(0)
    first.cancel()

    assert await second == 0.0


async def test_failed_authentications_are_throttled_per_source_and_per_key(database: Database) -> None:
    clock = Clock()
    throttle = AuthThrottle(SharedBuckets(database, clock=clock), failures=3, per_minute=6, clock=clock)
    other_replica = AuthThrottle(SharedBuckets(database, clock=clock), failures=3, per_minute=6, clock=clock)

    assert [await r.failed(["ip:10.0.0.1"]) for r in (throttle, other_replica, throttle)] == [0.0, 0.0, 0.0]
    # The fourth failure, on either replica, is over the limit: refused until one refills (10 s at 6/min).
    wait = await other_replica.failed(["ip:10.0.0.1"])
    assert wait == pytest.approx(10.0)
    assert other_replica.blocked(["ip:10.0.0.1"]) == pytest.approx(10.0)
    assert other_replica.blocked(["ip:10.0.0.2", "key:abc"]) == 0.0
    clock.now += 10.0
    assert other_replica.blocked(["ip:10.0.0.1"]) == 0.0


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert [retry_after(w) for w in (0.0, 0.2, 1.0, 1.01, 59.5)] == ["1", "1", "1", "2", "60"]
    assert Quota.of(0.0, 2.0).capacity == 1.0  # a zero rate refuses instead of dividing by zero


def test_the_lru_keeps_recent_entries_and_drops_the_oldest() -> None:
    cache = LruDict(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.fresh("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert list(cache) == ["a", "c"]


async def test_a_key_store_cache_is_bounded_and_a_revocation_reaches_another_store_within_its_ttl(
    database: Database,
) -> None:
    one = KeyStore(database, pepper="p", cache_s=0.3, entries=3)
    two = KeyStore(database, pepper="p", cache_s=0.3, entries=3)
    created = await one.create(ApiKeyCreate(name="erp", role="integration"), created_by="t")

    assert await two.verify(created.key) is not None  # created through one, known to the other
    for n in range(10):  # unknown ids: the cache stays at its bound and keeps the recent entries
        assert await two.verify(f"crmk_unknown{n}_secret") is None
    assert len(two._cache) == 3

    assert await two.verify(created.key) is not None
    await one.revoke(created.id)
    await asyncio.sleep(0.35)
    assert await two.verify(created.key) is None


def test_production_mode_refuses_a_sqlite_key_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    internal = InternalAuthSettings()
    sqlite = GatewaySettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    shared = GatewaySettings(database_url="postgresql+asyncpg://u@h/gateway")
    assert any("GATEWAY_DATABASE_URL" in p for p in production_problems(sqlite, internal))
    assert not any("GATEWAY_DATABASE_URL" in p for p in production_problems(shared, internal))
    monkeypatch.setenv("CRM_PRODUCTION", "true")
    with pytest.raises(ProductionConfigError, match="GATEWAY_DATABASE_URL"):
        create_app(GatewaySettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"))


@pytest.mark.parametrize(
    ("method", "path", "action", "object_id"),
    [
        ("POST", "/api/v1/keys", "key.created", None),
        ("DELETE", "/api/v1/keys/abc123", "key.revoked", "abc123"),
        ("DELETE", "/api/v1/customers/c-1", "customer.erased", "c-1"),
        ("PATCH", "/api/v1/customers/c-1/", "customer.updated", "c-1"),
        ("POST", "/api/v1/rules/r1/disable", "rule.disabled", "r1"),
        ("POST", "/api/v1/models/churn-1/activate", "model.activated", "churn-1"),
        ("POST", "/api/v1/models/churn/deactivate", "model.deactivated", None),
        ("POST", "/api/v1/webhooks", "webhook.created", None),
        ("GET", "/api/v1/audit", "audit.read", None),
    ],
)
def test_audited_requests_are_recognised_with_their_object_id(
    method: str, path: str, action: str, object_id: str | None
) -> None:
    match = audited(method, path)
    assert match is not None
    assert (match[0].action, match[1]) == (action, object_id)


def test_reads_and_casework_are_not_audited_and_free_text_never_becomes_an_object_id() -> None:
    assert audited("GET", "/api/v1/customers/c-1") is None
    assert audited("POST", "/api/v1/interactions") is None
    assert audited("POST", "/api/v1/rules/preview") is None
    match = audited("DELETE", "/api/v1/customers/Jane Doe <jane@example.com>")
    assert match is not None and match[1] is None


_TAT = text("SELECT tat FROM rate_buckets WHERE key = 'rate:u'")


def test_every_deployment_gives_the_gateway_a_postgresql_database_shared_by_its_replicas() -> None:
    k8s = REPO_ROOT / "deploy" / "k8s"
    [deployment] = [d for d in yaml.safe_load_all((k8s / "gateway.yaml").read_text()) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"] + pod["initContainers"]:
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["GATEWAY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "GATEWAY_DATABASE_URL"
    secret = yaml.safe_load((k8s / "secret.yaml").read_text())
    assert secret["stringData"]["GATEWAY_DATABASE_URL"].startswith("postgresql+asyncpg://")
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["gateway"]["environment"]["GATEWAY_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "CREATE DATABASE gateway;" in (REPO_ROOT / "deploy" / "docker" / "postgres-init.sql").read_text()


async def test_a_quota_store_that_cannot_be_reached_lets_requests_through(tmp_path: Path) -> None:
    # No migrations: the table is missing, as if the database were unreachable.
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        limiter = _limiter(database, Clock())
        assert [await limiter.take("u", "agent") for _ in range(10)] == [0.0] * 10
    finally:
        await database.dispose()
