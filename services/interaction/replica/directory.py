"""Asking the customer service about a customer the local replica has not seen yet.

The replica (built from crm.customer.v1) lags a customer created a moment ago; rather than refuse a
complaint for a customer that exists, the API asks the customer master directly. One pooled client
per app, created on first use and closed when the app shuts down (see router.lifespan).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from fastapi import FastAPI

from servicekit.auth import internal_headers
from servicekit.context import current_correlation_id

log = logging.getLogger("interaction.directory")
PRINCIPAL = "service:interaction"


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    """The customer master's answer, reduced to what the replica keeps."""

    customer_id: str
    status: str | None = None
    external_ref: str | None = None
    version: int = 0
    updated_at: datetime | None = None
    erased: bool = False
    owner: str | None = None  # the account manager
    # Asked for with profile=True (a backfill): segment, team, account-managed and scored tier.
    segment: str | None = None
    team: str | None = None
    managed_tier: str | None = None
    scored_tier: str | None = None
    scored_tier_at: datetime | None = None


class CustomerServiceUnavailable(Exception):
    """The customer service could not answer (unreachable, timed out, 5xx or a malformed reply)."""


# What the domain functions need: a customer id in, a snapshot (or None for "no such customer") out.
CustomerLookup = Callable[[str], Awaitable[CustomerSnapshot | None]]
# Many at once: every id asked for is in the answer, with None for "no such customer".
CustomerBatchLookup = Callable[[Sequence[str]], Awaitable[Mapping[str, CustomerSnapshot | None]]]
LOOKUP_PATH = "/customers/lookup"
LOOKUP_CHUNK = 5000  # the customer service's limit per call


class CustomerDirectory:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        batch_wait_s: float = 0.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.batch_wait_s = batch_wait_s  # how long fetch_many keeps retrying an unavailable customer service
        # A lookup of thousands of ids takes longer than one customer's read, the more so on a loaded
        # machine: it may take the whole wait, where a single read counts as failed after timeout_s.
        self._batch_timeout = httpx.Timeout(max(timeout_s, batch_wait_s))
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            # Retries a refused or reset connection once (e.g. a keep-alive socket the server closed).
            transport=transport or httpx.AsyncHTTPTransport(retries=1),
            headers={"accept": "application/json"},
        )

    async def fetch(self, customer_id: str) -> CustomerSnapshot | None:
        """The customer, None if the customer service does not know it; raises CustomerServiceUnavailable."""
        path = f"/customers/{quote(customer_id, safe='')}"
        # Services accept only calls signed with the platform's internal credential (servicekit.auth).
        headers = internal_headers("GET", path, principal=PRINCIPAL)
        request_id = current_correlation_id()
        if request_id:
            headers["x-request-id"] = request_id
        try:
            response = await self._client.get(path, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("customer service unreachable", extra={"error": repr(exc)})
            raise CustomerServiceUnavailable(repr(exc)) from exc
        if response.status_code == 404:
            return None
        if response.status_code == 410:
            return CustomerSnapshot(customer_id=customer_id, erased=True)
        if response.status_code != 200:
            log.warning("customer service error", extra={"status_code": response.status_code})
            raise CustomerServiceUnavailable(f"customer service answered {response.status_code}")
        try:
            return _snapshot(customer_id, response.json())
        except (ValueError, TypeError, KeyError) as exc:
            raise CustomerServiceUnavailable(f"malformed customer: {exc!r}") from exc

    async def fetch_many(
        self, customer_ids: Sequence[str], *, profile: bool = False
    ) -> dict[str, CustomerSnapshot | None]:
        """Every id -> its snapshot, None when the customer service knows no such customer.

        One signed call per 5,000 ids. An unavailable customer service is asked again, with growing
        pauses, for up to batch_wait_s in all; then CustomerServiceUnavailable is raised.
        """
        wanted = sorted(set(customer_ids))
        answers: dict[str, CustomerSnapshot | None] = {}
        deadline = time.monotonic() + self.batch_wait_s
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            pause = 0.1
            while True:
                try:
                    answers.update(await self._lookup(chunk, profile))
                    break
                except CustomerServiceUnavailable:
                    if time.monotonic() + pause > deadline:
                        raise
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 2.0)
        return answers

    async def _lookup(self, chunk: Sequence[str], profile: bool = False) -> dict[str, CustomerSnapshot | None]:
        body = orjson.dumps({"ids": list(chunk), "profile": True} if profile else {"ids": list(chunk)})
        headers = internal_headers("POST", LOOKUP_PATH, body=body, principal=PRINCIPAL)
        headers["content-type"] = "application/json"
        request_id = current_correlation_id()
        if request_id:
            headers["x-request-id"] = request_id
        try:
            response = await self._client.post(LOOKUP_PATH, content=body, headers=headers, timeout=self._batch_timeout)
        except httpx.HTTPError as exc:
            log.warning("customer service unreachable", extra={"error": repr(exc)})
            raise CustomerServiceUnavailable(repr(exc)) from exc
        if response.status_code != 200:
            log.warning("customer service error", extra={"status_code": response.status_code})
            raise CustomerServiceUnavailable(f"customer service answered {response.status_code}")
        try:
            answer = response.json()
            found: dict[str, CustomerSnapshot | None] = {c: None for c in chunk}
            for item in answer["customers"]:
                snapshot = _snapshot(str(item["id"]), item)
                if snapshot.customer_id in found:
                    found[snapshot.customer_id] = snapshot
        except (ValueError, TypeError, KeyError) as exc:
            raise CustomerServiceUnavailable(f"malformed lookup answer: {exc!r}") from exc
        return found

    async def aclose(self) -> None:
        await self._client.aclose()


def _snapshot(customer_id: str, body: dict[str, Any]) -> CustomerSnapshot:
    if str(body["id"]) != customer_id:
        raise ValueError(f"asked for {customer_id!r}, got {body['id']!r}")
    updated_at = body.get("updated_at")
    return CustomerSnapshot(
        customer_id=customer_id,
        status=body.get("status"),
        external_ref=body.get("external_ref"),
        owner=body.get("owner"),
        version=int(body.get("version") or 0),
        updated_at=datetime.fromisoformat(updated_at) if updated_at else None,
        erased=bool(body.get("erased") or body.get("erased_at")),
        segment=body.get("segment"),
        team=body.get("team"),
        managed_tier=body.get("tier"),
        scored_tier=body.get("scored_tier"),
        scored_tier_at=datetime.fromisoformat(scored_at) if (scored_at := body.get("scored_tier_at")) else None,
    )


def customer_directory(app: FastAPI) -> CustomerDirectory:
    """The app's directory, created on first use (tests may put their own on app.state beforehand)."""
    directory: CustomerDirectory | None = getattr(app.state, "customer_directory", None)
    if directory is None:
        settings = app.state.settings
        directory = CustomerDirectory(
            settings.customer_url, timeout_s=settings.customer_timeout_s, batch_wait_s=settings.customer_lookup_wait_s
        )
        app.state.customer_directory = directory
    return directory


async def close_customer_directory(app: FastAPI) -> None:
    directory: CustomerDirectory | None = getattr(app.state, "customer_directory", None)
    if directory is not None:
        app.state.customer_directory = None
        await directory.aclose()
