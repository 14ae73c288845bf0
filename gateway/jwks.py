"""The identity provider's signing keys (GATEWAY_JWKS_URL), kept fresh.

The key set is cached for as long as its Cache-Control max-age says, bounded by GATEWAY_JWKS_CACHE_MIN_S
and _MAX_S (no header: the minimum). A token whose `kid` is not in the set means the provider rotated its
keys: the set is fetched again at once, but at most once per GATEWAY_JWKS_REFETCH_FLOOR_S, so a flood of
tokens with made-up kids costs the provider one request per floor interval, not one per token. A failed
fetch keeps the keys already known (tokens signed with them still verify) and is retried after the floor.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import orjson

log = logging.getLogger("gateway.jwks")

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)


class JwksError(Exception):
    """No key verifies this token's signature (unknown kid, or the key set is unavailable)."""


def cache_lifetime(cache_control: str | None, *, min_s: float, max_s: float) -> float:
    """How long to keep a key set served with this Cache-Control header."""
    if cache_control:
        if _NO_CACHE.search(cache_control):
            return min_s
        match = _MAX_AGE.search(cache_control)
        if match:
            return min(max(float(match.group(1)), min_s), max(max_s, min_s))
    return min_s


class JwksCache:
    def __init__(
        self,
        url: str,
        *,
        min_s: float,
        max_s: float,
        refetch_floor_s: float,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_s = min_s
        self.max_s = max_s
        self.refetch_floor_s = refetch_floor_s
        self.clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None  # created on first use, in the running loop
        self._keys: dict[str, Any] = {}  # kid ("" for a key without one) -> the public key
        self._expires = float("-inf")
        self._last_fetch = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None) -> Any:
        """The public key for ``kid``; raises JwksError if the (refreshed) set has none."""
        now = self.clock()
        if now >= self._expires or (kid or "") not in self._keys:
            await self._refresh(kid)
        return self._pick(kid)

    def _pick(self, kid: str | None) -> Any:
        if kid is None:
            # A token without kid is acceptable only when the set leaves no choice.
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise JwksError("the token names no key (kid) and the key set holds several")
        key = self._keys.get(kid)
        if key is None:
            raise JwksError(f"no key with kid {kid!r} in the identity provider's key set")
        return key

    async def _refresh(self, kid: str | None) -> None:
        async with self._lock:
            now = self.clock()
            expired = now >= self._expires
            if not expired and (kid or "") in self._keys:
                return  # another request refreshed it while this one waited
            if now - self._last_fetch < self.refetch_floor_s:
                return  # fetched moments ago: an unknown kid now is not worth another request
            self._last_fetch = now
            self.fetches += 1
            try:
                document, cache_control = await self._fetch()
                keys = _parse(document)
            except (TimeoutError, aiohttp.ClientError, ValueError, jwt.PyJWTError) as exc:
                # Keep what is known; retry after the floor interval.
                log.warning("could not fetch the JWKS", extra={"error": type(exc).__name__})
                return
            self._keys = keys
            self._expires = now + cache_lifetime(cache_control, min_s=self.min_s, max_s=self.max_s)

    async def _fetch(self) -> tuple[Any, str | None]:
        """The key set document and its Cache-Control header; raises unless the answer is a 200 with JSON."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        async with self._session.get(self.url, headers={"accept": "application/json"}) as response:
            response.raise_for_status()
            return orjson.loads(await response.read()), response.headers.get("cache-control")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _parse(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: dict[str, Any] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue  # encryption keys do not sign tokens
        try:
            keys[str(entry.get("kid") or "")] = jwt.PyJWK(entry).key
        except jwt.PyJWTError:
            continue  # a key type this gateway cannot use; the others still serve
    return keys
