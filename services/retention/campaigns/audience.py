"""A campaign's audience, from the scoring service's segment builder (scoring owns the segment language
and the data it filters: scores, value, RFM and its customer replica).

Retention reaches it the way services reach each other: a call signed with the platform's internal
credential (servicekit.auth), never through the gateway and never into scoring's tables. A filter given
with a campaign is saved there as a segment (``POST /segments``), so a campaign always names a segment the
analyst can open, count and export. The members are read once, at launch, from the segment's streamed
CSV export (``GET /segments/{id}/customers?format=csv``): one call, whatever the audience's size.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from servicekit.auth import internal_headers
from servicekit.context import current_correlation_id
from servicekit.problems import Problem, field_error

log = logging.getLogger("retention.campaigns")
PRINCIPAL = "service:retention"


@dataclass(frozen=True, slots=True)
class AudienceMember:
    customer_id: str
    value_tier: str | None = None
    status: str | None = None


class ScoringUnavailable(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(503, "Scoring service unavailable", detail, code="upstream_unavailable")


class SegmentClient:
    def __init__(self, base_url: str, *, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            transport=transport or httpx.AsyncHTTPTransport(retries=1),
        )

    def _headers(self, method: str, path: str, *, query: str = "", body: bytes = b"") -> dict[str, str]:
        headers = internal_headers(method, path, query=query, body=body, principal=PRINCIPAL)
        request_id = current_correlation_id()
        if request_id:
            headers["x-request-id"] = request_id
        return headers

    async def save_filter(self, *, name: str, conditions: list[Any]) -> str:
        """Save the filter as a segment; its id. A filter scoring refuses is a 422 naming the condition."""
        path = "/segments"
        body = orjson.dumps(
            {"name": name[:200], "description": "audience of a win-back campaign", "filter": conditions}
        )
        headers = {**self._headers("POST", path, body=body), "content-type": "application/json"}
        response = await self._send("POST", path, content=body, headers=headers)
        if response.status_code == 422:
            problem = _json(response)
            errors = [
                field_error(str(e.get("field", "filter")).removeprefix("body."), str(e.get("message", "invalid")))
                for e in problem.get("errors", [])
                if isinstance(e, dict)
            ] or [field_error("filter", "invalid segment filter")]
            raise Problem(422, "Invalid segment filter", problem.get("detail"), code="validation", errors=errors)
        if response.status_code != 201:
            raise ScoringUnavailable(f"saving the segment answered {response.status_code}")
        return str(_json(response)["id"])

    async def exists(self, segment_id: str) -> bool:
        path = f"/segments/{quote(segment_id, safe='')}"
        response = await self._send("GET", path, headers=self._headers("GET", path))
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise ScoringUnavailable(f"reading the segment answered {response.status_code}")
        return True

    async def members(self, segment_id: str, *, limit: int) -> list[AudienceMember]:
        """The segment's customers now, at most ``limit`` (a larger segment is a 422 naming segment_id)."""
        path = f"/segments/{quote(segment_id, safe='')}/customers"
        query = "format=csv"
        headers = {**self._headers("GET", path, query=query), "accept": "text/csv"}
        response = await self._send("GET", f"{path}?{query}", headers=headers)
        if response.status_code == 404:
            raise Problem(
                422, "Unknown segment", code="validation", errors=[field_error("segment_id", "no such segment")]
            )
        if response.status_code != 200:
            raise ScoringUnavailable(f"the segment export answered {response.status_code}")
        members = [
            AudienceMember(row["customer_id"], row.get("value_tier") or None, row.get("status") or None)
            for row in csv.DictReader(io.StringIO(response.text))
            if row.get("customer_id")
        ]
        if len(members) > limit:
            raise Problem(
                422,
                "Audience too large",
                f"The segment has {len(members)} customers; a campaign takes at most {limit}.",
                code="validation",
                errors=[field_error("segment_id", f"at most {limit} customers")],
            )
        return members

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("scoring service unreachable", extra={"error": repr(exc)})
            raise ScoringUnavailable("the scoring service could not be reached") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
