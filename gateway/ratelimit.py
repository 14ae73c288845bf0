"""Rate limits that hold across gateway replicas, and the throttle on failed authentications.

Each caller has a token bucket (rate r per second, capacity r * burst factor) stored as one row in the
gateway's database: its "theoretical arrival time" ``tat`` (GCRA). The bucket is empty up to ``tat -
burst``; a request takes tokens by moving ``tat`` forward. One atomic ``INSERT .. ON CONFLICT DO UPDATE
.. RETURNING`` per claim takes as many tokens as are free (up to the batch asked for) and reports how
many it took, so every replica spends from the same bucket and no replica can overdraw it.

Cost: to keep that statement off most requests, a replica claims a small batch (10 % of the capacity by
default) and spends it locally for at most ``batch_ttl_s``; tokens it claimed but did not spend in that
time are lost to the caller, so the shared limit is never exceeded, only briefly under-used. An agent
(capacity 40) costs one statement per 4 requests, an integration (capacity 400) one per 40.

Failed authentications draw from buckets of their own per source address and per presented API-key id;
an empty bucket answers 429 to every request from that source (or for that key id) until it refills,
before any credential is checked. A replica learns of a block from its own next failure, so across N
replicas an attacker gets at most ``capacity + N`` guesses per refill.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Integer, case, cast, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement
from sqlmodel import Field as SQLField

from gateway.keys import GatewayTable
from gateway.lru import LruDict
from servicekit.db import Database
from servicekit.tables import table_of

log = logging.getLogger("gateway.ratelimit")

# Rows of buckets that have been full for this long are deleted, by each replica at most this often.
PRUNE_EVERY_S = 60.0


class RateBucket(GatewayTable, table=True):
    __tablename__ = "rate_buckets"

    key: str = SQLField(primary_key=True, max_length=200)
    # Epoch seconds at which the bucket is full again (GCRA's theoretical arrival time).
    tat: float = SQLField(sa_column=Column(Float, nullable=False))
    # Tokens the last claim took; written and returned by the same statement.
    granted: int = SQLField(sa_column=Column(Integer, nullable=False))


BUCKETS = table_of(RateBucket)


@dataclass(frozen=True, slots=True)
class Quota:
    rate: float  # tokens per second
    capacity: float  # tokens at most, spent at once

    @classmethod
    def of(cls, rate: float, burst_factor: float) -> Quota:
        rate = max(rate, 1e-6)  # a zero rate still refills (once a million seconds), never divides by zero
        return cls(rate, max(1.0, rate * burst_factor))

    @property
    def burst_s(self) -> float:
        return self.capacity / self.rate


def _greatest(a: ColumnElement[Any], b: Any, postgres: bool) -> ColumnElement[Any]:
    return func.greatest(a, b) if postgres else func.max(a, b)


def _least(a: ColumnElement[Any], b: Any, postgres: bool) -> ColumnElement[Any]:
    return func.least(a, b) if postgres else func.min(a, b)


def _floor(value: ColumnElement[Any], postgres: bool) -> ColumnElement[Any]:
    # PostgreSQL rounds a float cast to integer; SQLite truncates (its floor() is an optional build).
    return cast(func.floor(value), Integer) if postgres else cast(value, Integer)


class SharedBuckets:
    """Token buckets in the gateway's database (PostgreSQL across replicas, SQLite embedded)."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock
        self.postgres = database.is_postgres
        self._last_prune = 0.0
        self._prune_task: asyncio.Task[None] | None = None

    async def claim(self, key: str, quota: Quota, want: int) -> tuple[int, float]:
        """Take up to ``want`` tokens; (tokens taken, seconds until one is free again if none was).

        If the database cannot be reached the claim is granted (fails open, logged): a quota protects
        the services, and refusing every caller while the store is down would be the outage it guards
        against. API keys need the same database anyway; JWT secrets are not guessable.
        """
        try:
            return await self._claim(key, quota, want)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("rate bucket store unavailable; request allowed", extra={"error": type(exc).__name__})
            return want, 0.0

    async def _claim(self, key: str, quota: Quota, want: int) -> tuple[int, float]:
        now = self.clock()
        pg = self.postgres
        per_token = 1.0 / quota.rate
        start = _greatest(BUCKETS.c.tat, now, pg)
        # Free tokens: how far the bucket is from full, in tokens (a hair of slack for float rounding).
        free = _floor((now + quota.burst_s - start) * quota.rate + 1e-6, pg)
        granted = _greatest(_least(free, want, pg), 0, pg)
        first = min(want, int(quota.capacity + 1e-6))
        dialect = postgresql if pg else sqlite
        statement = (
            dialect.insert(BUCKETS)
            .values(key=key, tat=now + first * per_token, granted=first)
            .on_conflict_do_update(
                index_elements=[BUCKETS.c.key],
                # Both SET expressions read the row as it was: the claim is computed once, atomically.
                set_={"granted": granted, "tat": start + granted * per_token},
            )
            .returning(BUCKETS.c.tat, BUCKETS.c.granted)
        )
        # One statement that commits by itself: on PostgreSQL a single round trip, no BEGIN/COMMIT.
        async with self.database.autocommit() as conn:
            tat, taken = (await conn.execute(statement)).one()
        self._maybe_prune(now)
        if taken > 0:
            return taken, 0.0
        return 0, max(0.0, tat + per_token - quota.burst_s - now)

    async def claim_all(self, key: str, quota: Quota, want: int) -> float:
        """Take exactly ``want`` tokens or none: 0 when taken, else the seconds until ``want`` are free.

        For costs of many tokens at once (rows of a bulk request): a partial grant would spend the
        caller's allowance on a request that is refused. ``want`` above the capacity is taken as the
        capacity. Fails open like ``claim``.
        """
        want = max(1, min(want, int(quota.capacity + 1e-6)))
        try:
            return await self._claim_all(key, quota, want)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("rate bucket store unavailable; request allowed", extra={"error": type(exc).__name__})
            return 0.0

    async def _claim_all(self, key: str, quota: Quota, want: int) -> float:
        now = self.clock()
        pg = self.postgres
        per_token = 1.0 / quota.rate
        start = _greatest(BUCKETS.c.tat, now, pg)
        free = _floor((now + quota.burst_s - start) * quota.rate + 1e-6, pg)
        granted = case((free >= want, want), else_=0)
        dialect = postgresql if pg else sqlite
        statement = (
            dialect.insert(BUCKETS)
            .values(key=key, tat=now + want * per_token, granted=want)
            .on_conflict_do_update(
                index_elements=[BUCKETS.c.key],
                set_={"granted": granted, "tat": start + granted * per_token},
            )
            .returning(BUCKETS.c.tat, BUCKETS.c.granted)
        )
        async with self.database.autocommit() as conn:
            tat, taken = (await conn.execute(statement)).one()
        self._maybe_prune(now)
        if taken > 0:
            return 0.0
        # The bucket holds enough again once tat has moved back to want tokens below full.
        return max(0.0, float(tat) + want * per_token - quota.burst_s - now)

    def _maybe_prune(self, now: float) -> None:
        if now - self._last_prune < PRUNE_EVERY_S or (self._prune_task is not None and not self._prune_task.done()):
            return
        self._last_prune = now
        self._prune_task = asyncio.create_task(self._prune(now))

    async def _prune(self, now: float) -> None:
        # A bucket whose tat has passed is full: its row says nothing a fresh insert would not.
        try:
            async with self.database.autocommit() as conn:
                await conn.execute(BUCKETS.delete().where(BUCKETS.c.tat < now - PRUNE_EVERY_S))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("rate buckets not pruned", extra={"error": type(exc).__name__})


class RateLimiter:
    """Per-caller quotas by role, shared by every replica through SharedBuckets, spent in local batches."""

    def __init__(
        self,
        buckets: SharedBuckets,
        rates: dict[str, float],
        burst_factor: float,
        *,
        batch_fraction: float = 0.1,
        batch_ttl_s: float = 1.0,
        local_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buckets = buckets
        self.quotas = {role: Quota.of(rate, burst_factor) for role, rate in rates.items()}
        self.default = Quota.of(min(rates.values(), default=10.0), burst_factor)
        self.batch_fraction = batch_fraction
        self.batch_ttl_s = batch_ttl_s
        self.clock = clock
        # key -> [tokens left, monotonic time they lapse]; bounded, least recently used dropped first.
        self._local: LruDict = LruDict(local_entries)
        # key -> the claim of a batch in flight for it (at most one per caller and replica).
        self._claims: dict[str, asyncio.Future[float]] = {}

    def quota(self, role: str) -> Quota:
        return self.quotas.get(role, self.default)

    async def take(self, key: str, role: str) -> float:
        """Spend one token; 0 if allowed, else the seconds until a token is free."""
        while True:
            held = self._local.get(key)
            if held is not None and held[0] > 0 and held[1] > self.clock():
                held[0] -= 1
                return 0.0
            # One claim per caller at a time: requests arriving while a batch is being claimed wait for
            # that claim instead of each claiming a batch of their own, which would drain the shared
            # bucket by batches nobody spends and refuse the caller far below its quota.
            claim = self._claims.get(key)
            if claim is None:
                claim = asyncio.ensure_future(self._refill(key, self.quota(role)))
                self._claims[key] = claim
            # Shielded: a request that is cancelled while waiting does not cancel the others' claim.
            wait = await asyncio.shield(claim)
            if wait > 0:
                return wait

    async def _refill(self, key: str, quota: Quota) -> float:
        """Claim a batch into the local store; 0 when tokens were taken, else the seconds to wait."""
        try:
            want = max(1, int(quota.capacity * self.batch_fraction))
            taken, wait = await self.buckets.claim(f"rate:{key}", quota, want)
            if taken == 0:
                return wait
            self._local.put(key, [taken, self.clock() + self.batch_ttl_s])
            return 0.0
        finally:
            # Removed before the waiters resume, so none of them can find this finished claim again.
            if self._claims.get(key) is asyncio.current_task():
                del self._claims[key]


class AuthThrottle:
    """Failed authentications per source address and per presented API-key id, shared across replicas."""

    def __init__(
        self,
        buckets: SharedBuckets,
        *,
        failures: int,
        per_minute: float,
        local_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buckets = buckets
        self.quota = Quota(max(per_minute, 1e-6) / 60.0, float(failures))
        self.clock = clock
        # subject -> monotonic time until which it is refused without checking a credential.
        self._blocked: LruDict = LruDict(local_entries)

    def blocked(self, subjects: list[str]) -> float:
        """Seconds the request must wait because one of its subjects is throttled; 0 if none is."""
        now = self.clock()
        wait = 0.0
        for subject in subjects:
            until = self._blocked.get(subject)
            if until is not None:
                if until > now:
                    wait = max(wait, until - now)
                else:
                    del self._blocked[subject]
        return wait

    async def failed(self, subjects: list[str]) -> float:
        """Record one failure for each subject; the seconds to wait if any is now over its limit, else 0."""
        wait = 0.0
        for subject in subjects:
            taken, subject_wait = await self.buckets.claim(f"authfail:{subject}", self.quota, 1)
            if taken == 0:
                self._blocked.put(subject, self.clock() + subject_wait)
                wait = max(wait, subject_wait)
        return wait


def retry_after(wait_s: float) -> str:
    """The Retry-After value for a wait: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
