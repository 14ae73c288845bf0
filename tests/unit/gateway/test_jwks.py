"""The JWKS cache follows the identity provider: Cache-Control max-age (bounded), and a rotation (unknown
kid) refetches at once but no more often than the floor interval."""

from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.jwks import JwksCache, JwksError, cache_lifetime
from tests.unit.gateway.fakes import Servers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Provider:
    """A JWKS endpoint whose key set and Cache-Control the test changes."""

    def __init__(self) -> None:
        self.kids: list[str] = ["k1"]
        self.cache_control: str | None = "max-age=300"
        self.requests = 0
        self.failing = False
        self._keys = {kid: _public_jwk(kid) for kid in ("k1", "k2", "k3")}

    async def handler(self, request: Request) -> Response:
        self.requests += 1
        if self.failing:
            return Response(status_code=503)
        headers = {"cache-control": self.cache_control} if self.cache_control else {}
        return JSONResponse({"keys": [self._keys[k] for k in self.kids]}, headers=headers)


def _public_jwk(kid: str) -> dict[str, Any]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"kid": kid, "use": "sig"}


@pytest.fixture
async def idp_url(provider: "Provider") -> AsyncIterator[str]:
    """The provider's key set served over real HTTP on loopback."""
    servers = Servers()
    try:
        yield await servers.start(Starlette(routes=[Route("/jwks.json", provider.handler)])) + "/jwks.json"
    finally:
        await servers.stop()


@pytest.fixture
def provider() -> "Provider":
    return Provider()


def _cache(url: str, clock: Clock) -> JwksCache:
    return JwksCache(url, min_s=60, max_s=3600, refetch_floor_s=30, clock=clock)


@pytest.mark.parametrize(
    ("header", "lifetime"),
    [
        ("max-age=300", 300),
        ("public, max-age=120, must-revalidate", 120),
        ("max-age=5", 60),  # at least the minimum
        ("max-age=999999", 3600),  # at most the maximum
        ("no-store", 60),
        (None, 60),
        ("s-maxage=10", 60),  # only max-age counts
    ],
)
def test_the_key_set_lives_as_long_as_its_max_age_within_the_bounds(header: str | None, lifetime: float) -> None:
    assert cache_lifetime(header, min_s=60, max_s=3600) == lifetime


async def test_the_key_set_is_fetched_again_once_its_max_age_has_passed(provider: Provider, idp_url: str) -> None:
    clock = Clock()
    cache = _cache(idp_url, clock)
    await cache.key("k1")
    clock.now += 299
    await cache.key("k1")
    assert provider.requests == 1

    clock.now += 2
    await cache.key("k1")
    assert provider.requests == 2
    await cache.aclose()


async def test_a_rotated_key_is_found_by_refetching_on_its_unknown_kid(provider: Provider, idp_url: str) -> None:
    clock = Clock()
    cache = _cache(idp_url, clock)
    await cache.key("k1")
    provider.kids = ["k1", "k2"]
    clock.now += 31  # past the floor, long before max-age

    assert await cache.key("k2") is not None
    assert provider.requests == 2
    await cache.aclose()


async def test_unknown_kids_refetch_no_more_often_than_the_floor_interval(provider: Provider, idp_url: str) -> None:
    clock = Clock()
    cache = _cache(idp_url, clock)
    await cache.key("k1")
    for attempt in range(20):  # a flood of tokens with made-up kids
        clock.now += 1
        with pytest.raises(JwksError):
            await cache.key(f"made-up-{attempt}")
    assert provider.requests == 1  # all within 30 s of the first fetch

    clock.now += 15
    with pytest.raises(JwksError):
        await cache.key("made-up-again")
    assert provider.requests == 2
    await cache.aclose()


async def test_a_failed_refresh_keeps_the_known_keys(provider: Provider, idp_url: str) -> None:
    clock = Clock()
    cache = _cache(idp_url, clock)
    known = await cache.key("k1")
    provider.failing = True
    clock.now += 400  # expired

    assert await cache.key("k1") is known
    assert provider.requests == 2
    await cache.aclose()


async def test_a_token_without_kid_needs_a_set_of_exactly_one_key(provider: Provider, idp_url: str) -> None:
    clock = Clock()
    cache = _cache(idp_url, clock)
    assert await cache.key(None) is not None
    provider.kids = ["k1", "k2"]
    clock.now += 400
    with pytest.raises(JwksError):
        await cache.key(None)
    await cache.aclose()
