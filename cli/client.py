"""The gateway as the CLI sees it: JSON over HTTP, problem+json errors turned into readable messages,
and bulk imports sent in chunks with their per-row reports mapped back to file lines."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from cli.progress import Progress
from cli.rows import Row

API = "/api/v1"
RETRIES = 3
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


class Gateway:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        retry_backoff_s: float = 0.5,
    ) -> None:
        self.retry_backoff_s = retry_backoff_s
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
        """A request, retried while the gateway is unreachable or answers 503 (nothing was stored then)."""
        for attempt in range(1, RETRIES + 1):
            try:
                response = self._client.request(method, API + path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == RETRIES:
                    raise GatewayError(f"cannot reach the gateway at {self.base_url}: {exc}") from exc
            except httpx.HTTPError as exc:
                raise GatewayError(f"{method} {path} failed: {exc!r}") from exc
            else:
                if response.status_code != 503 or attempt == RETRIES:
                    return response
            time.sleep(self.retry_backoff_s * 2**attempt)
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
    """Send rows to a bulk endpoint ({"rows": [...]}) chunk by chunk; map each row's result to its line."""
    summary = ImportSummary()
    progress = progress or Progress(label, len(rows))
    try:
        for start in range(0, len(rows), chunk_size):
            chunk = rows[start : start + chunk_size]
            response = _post_chunk(gateway, path, chunk)
            if response.status_code != 200:
                raise GatewayError(f"{label}: rows from line {chunk[0].line} refused: {_describe(response)}")
            else:
                _apply_report(response.json(), chunk, summary)
            progress.advance(len(chunk))
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
        time.sleep(gateway.retry_backoff_s * 4 * attempt)
    return response


def _apply_report(report: dict[str, Any], chunk: Sequence[Row], summary: ImportSummary) -> None:
    for result in report.get("rows", []):
        row = chunk[int(result["index"])]
        status = result.get("status")
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
