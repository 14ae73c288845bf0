"""The gateway as the CLI sees it: JSON over HTTP, problem+json errors turned into readable messages,
and bulk imports sent in chunks with their per-row reports mapped back to file lines."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from cli.progress import Progress
from cli.rows import Row

API = "/api/v1"
RETRIES = 3
ROW_RETRIES = 5  # sends of a row the platform rejected as retryable, after the first
# Answers that mean "not now": nothing was stored, the same request may be sent again after a wait.
BUSY = frozenset({429, 503})
# The longest the CLI waits before one retry, whatever Retry-After asks for.
MAX_WAIT_S = 60.0
# A row with one of these is stored at most once however often it is sent.
IDEMPOTENCY_KEYS = frozenset({"external_id", "external_ref"})


class GatewayError(Exception):
    """The gateway could not be reached or refused a request; the message says why."""


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    text = f"HTTP {response.status_code}: {body.get('title', '')}"
    if body.get("detail"):
        text += f" - {body['detail']}"
    errors = body.get("errors") or []
    if errors:
        text += " (" + "; ".join(_error_text(e) for e in errors[:5]) + ")"
    return text


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('field', '?')}: {error.get('message', 'invalid')}"
    return str(error)


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """The wait a Retry-After header asks for: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_wait_s(
    attempt: int,
    retry_after: float | None,
    *,
    backoff_s: float,
    cap_s: float = MAX_WAIT_S,
    rng: Callable[[], float] = random.random,
) -> float:
    """How long to wait before retry number `attempt` (1-based): what the server asked for, or an
    exponential backoff, capped, plus up to 20% jitter so many clients do not return in step."""
    base = retry_after if retry_after is not None else backoff_s * 2 ** (attempt - 1)
    base = min(base, cap_s)
    return min(cap_s, base * (1 + 0.2 * rng())) if base > 0 else 0.0


class Gateway:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        retry_backoff_s: float = 0.5,
        retries: int = RETRIES,
        max_wait_s: float = MAX_WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry_backoff_s = retry_backoff_s
        self.retries = max(1, retries)
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self.waits: list[float] = []  # every wait before a retry, in order (read by the summary and tests)
        headers = {"accept": "application/json", "user-agent": "crm-cli"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request, retried while the gateway is unreachable or answers 429 or 503 (nothing was stored
        then), waiting what Retry-After asks for (capped, with jitter) or backing off exponentially."""
        for attempt in range(1, self.retries + 1):
            asked: float | None = None
            try:
                response = self._client.request(method, API + path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self.retries:
                    raise GatewayError(f"cannot reach the gateway at {self.base_url}: {exc}") from exc
            except httpx.HTTPError as exc:
                raise GatewayError(f"{method} {path} failed: {exc!r}") from exc
            else:
                if response.status_code not in BUSY or attempt == self.retries:
                    return response
                asked = retry_after_s(response.headers.get("retry-after"))
            wait = retry_wait_s(attempt, asked, backoff_s=self.retry_backoff_s, cap_s=self.max_wait_s)
            self.waits.append(wait)
            self.sleep(wait)
        raise AssertionError("unreachable")

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self.request("GET", path, params={k: v for k, v in (params or {}).items() if v is not None})
        if response.status_code != 200:
            raise GatewayError(_describe(response))
        return response.json()


@dataclass
class ImportSummary:
    created: int = 0
    existing: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    ids: dict[int, str] = field(default_factory=dict)  # line -> id, for created and existing rows
    row_retries: int = 0  # rows sent again after a retryable rejection

    @property
    def total(self) -> int:
        return self.created + self.existing + len(self.rejected)


def import_rows(
    gateway: Gateway,
    path: str,
    rows: Sequence[Row],
    *,
    label: str,
    chunk_size: int = 1000,
    progress: Progress | None = None,
) -> ImportSummary:
    """Send rows to a bulk endpoint ({"rows": [...]}) chunk by chunk; map each row's result to its line.

    A row the platform rejects as ``retryable`` (e.g. a customer its replica has not seen yet) is sent
    again, with the other such rows of its chunk, up to ROW_RETRIES times with a growing wait; only then
    is it reported rejected. 429 and 503 answers are retried by the gateway client (Retry-After)."""
    summary = ImportSummary()
    progress = progress or Progress(label, len(rows))
    try:
        for start in range(0, len(rows), chunk_size):
            chunk: Sequence[Row] = rows[start : start + chunk_size]
            for attempt in range(1, ROW_RETRIES + 2):
                response = _post_chunk(gateway, path, chunk)
                if response.status_code != 200:
                    raise GatewayError(f"{label}: rows from line {chunk[0].line} refused: {_describe(response)}")
                again = _apply_report(response.json(), chunk, summary, retry=attempt <= ROW_RETRIES)
                if not again:
                    break
                chunk = again
                summary.row_retries += len(again)
                gateway.sleep(gateway.retry_backoff_s * 2**attempt)
            progress.advance(min(chunk_size, len(rows) - start))
    finally:
        progress.close()
    return summary


def _post_chunk(gateway: Gateway, path: str, chunk: Sequence[Row]) -> httpx.Response:
    """POST one chunk. A gateway timeout (504) means the service may still finish the chunk; it is sent
    again only if every row carries its idempotency key, so the retry reports them `existing`."""
    body = {"rows": [row.body for row in chunk]}
    idempotent = all(IDEMPOTENCY_KEYS & row.body.keys() for row in chunk)
    for attempt in range(1, RETRIES + 2):
        response = gateway.request("POST", path, json=body)
        if response.status_code != 504 or not idempotent or attempt > RETRIES:
            return response
        gateway.sleep(gateway.retry_backoff_s * 4 * attempt)
    return response


def _apply_report(
    report: dict[str, Any], chunk: Sequence[Row], summary: ImportSummary, *, retry: bool = False
) -> list[Row]:
    """Count each row's result; with ``retry``, the rows rejected as retryable are returned instead."""
    again: list[Row] = []
    for result in report.get("rows", []):
        row = chunk[int(result["index"])]
        status = result.get("status")
        if status == "rejected" and retry and result.get("retryable"):
            again.append(row)
            continue
        if status == "rejected":
            reasons = "; ".join(_error_text(e) for e in result.get("errors") or []) or "rejected"
            summary.rejected.append((row.line, reasons))
            continue
        if status == "created":
            summary.created += 1
        else:
            summary.existing += 1
        if result.get("id"):
            summary.ids[row.line] = str(result["id"])
    return again
