"""The audit log: who changed (or read sensitive) what, when, with what outcome.

The gateway writes one row per audited request (AUDITED below: API keys, erasure, bulk imports,
rules, playbooks, webhooks, models, customer changes, reads of erasure receipts, webhook deliveries and
of this log) once the answer is known: just before the response's first byte leaves, so no audited
request is acknowledged without its row. A row holds ids only, never a body, a name or an email: the
caller (sub, role, kind, API-key id), the action, the object's type and id, the status code, the
request id. Admins read it at GET /api/v1/audit.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, Column, Integer, select
from sqlmodel import Field as SQLField
from sqlmodel import col
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.keys import GatewayTable
from gateway.routes import API_PREFIX, MEMO_MAX_PATH, WILDCARD
from gateway.upstream import current_request_id
from servicekit.db import Database
from servicekit.pagination import DEFAULT_PAGE, Limit
from servicekit.problems import Problem, field_error
from servicekit.types import UtcDateTime, UtcDatetime

log = logging.getLogger("gateway.audit")


def _now() -> datetime:
    return datetime.now(UTC)


class AuditEntry(GatewayTable, table=True):
    __tablename__ = "audit_log"

    # BIGSERIAL on PostgreSQL, INTEGER PRIMARY KEY (the rowid) on SQLite: ever increasing, the cursor.
    id: int | None = SQLField(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    at: datetime = SQLField(default_factory=_now, sa_type=UtcDateTime, index=True)
    actor: str = SQLField(max_length=200, index=True)  # the principal's sub ("key:<id>" for an API key)
    actor_role: str = SQLField(max_length=20)
    actor_kind: str = SQLField(max_length=10)  # user, key or anonymous
    key_id: str | None = SQLField(default=None, max_length=32)
    action: str = SQLField(max_length=40, index=True)
    object_type: str = SQLField(max_length=20)
    object_id: str | None = SQLField(default=None, max_length=100, index=True)
    status: int
    request_id: str | None = SQLField(default=None, max_length=200)


@dataclass(frozen=True, slots=True)
class Audited:
    """``method`` on ``pattern`` (segments after /api/v1, ``*`` = one) is ``action`` on ``object_type``.

    ``object_at``: the index of the segment holding the object's id; None for a creation, whose id is the
    last segment of the response's Location header, or for an action on a collection.
    """

    method: str
    pattern: tuple[str, ...]
    action: str
    object_type: str
    object_at: int | None = None

    def matches(self, method: str, segments: list[str]) -> bool:
        return (
            method == self.method
            and len(segments) == len(self.pattern)
            and all(p in (WILDCARD, s) for p, s in zip(self.pattern, segments, strict=True))
        )


def _a(method: str, path: str, action: str, object_type: str) -> Audited:
    pattern = tuple(path.split("/"))
    return Audited(method, pattern, action, object_type, 1 if len(pattern) > 1 and pattern[1] == WILDCARD else None)


AUDITED: tuple[Audited, ...] = (
    _a("POST", "keys", "key.created", "api_key"),
    _a("DELETE", "keys/*", "key.revoked", "api_key"),
    _a("PATCH", "customers/*", "customer.updated", "customer"),  # owner changes (reassignment) included
    _a("DELETE", "customers/*", "customer.erased", "customer"),
    _a("GET", "customers/*/erasure", "customer.erasure_read", "customer"),
    _a("POST", "customers/bulk", "customers.imported", "customer"),
    _a("POST", "customers/status/bulk", "customers.statuses_imported", "customer"),
    _a("PUT", "customers/*/consent", "consent.changed", "customer"),
    _a("POST", "customers/consent/bulk", "consent.imported", "customer"),
    _a("POST", "customers/*/points", "points.booked", "customer"),
    _a("POST", "interactions/bulk", "interactions.imported", "interaction"),
    _a("POST", "alerts/evaluate", "alerts.evaluated", "alert"),
    _a("POST", "rules", "rule.created", "rule"),
    _a("PATCH", "rules/*", "rule.updated", "rule"),
    _a("DELETE", "rules/*", "rule.deleted", "rule"),
    _a("POST", "rules/*/enable", "rule.enabled", "rule"),
    _a("POST", "rules/*/disable", "rule.disabled", "rule"),
    _a("POST", "playbooks", "playbook.created", "playbook"),
    _a("PATCH", "playbooks/*", "playbook.updated", "playbook"),
    _a("POST", "webhooks", "webhook.created", "webhook"),
    _a("DELETE", "webhooks/*", "webhook.deleted", "webhook"),
    _a("GET", "webhooks/*/deliveries", "webhook.deliveries_read", "webhook"),
    _a("POST", "models/value/refit", "model.refit_started", "job"),
    _a("POST", "models/churn/train", "model.training_started", "job"),
    _a("POST", "models/*/activate", "model.activated", "model"),
    _a("POST", "models/churn/deactivate", "model.deactivated", "model"),
    _a("GET", "audit", "audit.read", "audit"),
)
ACTIONS = frozenset(a.action for a in AUDITED)
_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def audited(method: str, path: str) -> tuple[Audited, str | None] | None:
    """The audit rule for a request on a decoded path, with the object id the path names; None if none."""
    # Remembered per process for the paths clients repeat (the rules are scanned one by one).
    return _audited_memo(method, path) if len(path) <= MEMO_MAX_PATH else _audited(method, path)


@functools.lru_cache(maxsize=2048)
def _audited_memo(method: str, path: str) -> tuple[Audited, str | None] | None:
    return _audited(method, path)


def _audited(method: str, path: str) -> tuple[Audited, str | None] | None:
    if not path.startswith(API_PREFIX + "/"):
        return None
    segments = path[len(API_PREFIX) + 1 :].rstrip("/").split("/")
    for rule in AUDITED:
        if rule.matches(method, segments):
            object_id = segments[rule.object_at] if rule.object_at is not None else None
            return rule, _clean_id(object_id)
    return None


def _clean_id(value: str | None) -> str | None:
    # Ids only: anything that is not shaped like one (free text could carry PII) is not stored.
    return value if value is not None and _ID.fullmatch(value) else None


def _location_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"location":
            return _clean_id(value.decode("latin-1").split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
    return None


class AuditLog:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def record(self, entry: AuditEntry) -> None:
        async with self.database.transaction() as session:
            session.add(entry)

    async def query(
        self,
        *,
        actor: str | None,
        action: str | None,
        object_id: str | None,
        since: datetime | None,
        until: datetime | None,
        before_id: int | None,
        limit: int,
    ) -> list[AuditEntry]:
        query = select(AuditEntry)
        if actor is not None:
            query = query.where(col(AuditEntry.actor) == actor)
        if action is not None:
            query = query.where(col(AuditEntry.action) == action)
        if object_id is not None:
            query = query.where(col(AuditEntry.object_id) == object_id)
        if since is not None:
            query = query.where(col(AuditEntry.at) >= since)
        if until is not None:
            query = query.where(col(AuditEntry.at) < until)
        if before_id is not None:
            query = query.where(col(AuditEntry.id) < before_id)
        query = query.order_by(col(AuditEntry.id).desc()).limit(limit)
        async with self.database.sessions() as session:
            return list((await session.execute(query)).scalars().all())


class AuditMiddleware:
    """Pure ASGI, just outside authentication: records audited requests, denied ones (403, 429) included."""

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The decoded path: what routing serves, whatever spelling the client used.
        match = audited("GET" if scope["method"] == "HEAD" else scope["method"], scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        rule, object_id = match

        async def send_after_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                principal = scope.get("state", {}).get("principal")
                if principal is not None:  # unauthenticated (401) requests have no actor to name
                    await self._record(rule, object_id, principal, message)
            await send(message)

        await self.app(scope, receive, send_after_recording)

    async def _record(self, rule: Audited, object_id: str | None, principal: Any, start: Message) -> None:
        status: int = start["status"]
        if object_id is None and rule.object_at is None and 200 <= status < 300:
            object_id = _location_id(start.get("headers", []))
        entry = AuditEntry(
            actor=principal.sub,
            actor_role=principal.role,
            actor_kind=principal.kind,
            key_id=principal.sub.removeprefix("key:") if principal.kind == "key" else None,
            action=rule.action,
            object_type=rule.object_type,
            object_id=object_id,
            status=status,
            request_id=current_request_id(),
        )
        try:
            await self.audit.record(entry)
        except Exception:
            # The action itself has happened; losing its row must be loud, not silent.
            log.exception("audit entry not written", extra={"action": rule.action, "status": status})


# ---- the admin API ------------------------------------------------------------------------------------


class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_role: str
    actor_kind: str
    key_id: str | None
    action: str
    object_type: str
    object_id: str | None
    status: int
    request_id: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryPublic]
    limit: int
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page; null on the last")


def _encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"a{entry_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("a") or not raw[1:].isdigit() or len(raw) > 20:
            raise ValueError(raw)
        return int(raw[1:])
    except ValueError:
        raise _invalid("query.cursor", "not a cursor this API issued") from None


def _invalid(field: str, message: str) -> Problem:
    errors = [field_error(field, message)]
    return Problem(422, "Invalid request", f"{field}: {message}", code="validation", errors=errors)


def audit_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX + "/audit", tags=["audit"])

    @router.get("", response_model=AuditPage, summary="The audit log, newest first (admins)")
    async def read_audit(
        request: Request,
        actor: Annotated[str | None, Query(max_length=200, description="the caller's sub, e.g. key:<id>")] = None,
        action: Annotated[
            str | None,
            Query(max_length=40, description="the audited action", json_schema_extra={"enum": sorted(ACTIONS)}),
        ] = None,
        object: Annotated[str | None, Query(max_length=100, description="the object's id")] = None,
        since: Annotated[UtcDatetime | None, Query(description="entries at or after (with a time zone)")] = None,
        until: Annotated[UtcDatetime | None, Query(description="entries before (with a time zone)")] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Annotated[str | None, Query(max_length=40, description="next_cursor of the previous page")] = None,
    ) -> AuditPage:
        if action is not None and action not in ACTIONS:
            raise _invalid("query.action", "unknown action; one of " + ", ".join(sorted(ACTIONS)))
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise _invalid(f"query.{name}", "needs a time zone (e.g. 2026-01-01T00:00:00Z)")
        if since is not None and until is not None and until <= since:
            raise _invalid("query.until", "must be after since")
        before_id = _decode_cursor(cursor) if cursor is not None else None
        rows = await request.app.state.audit.query(
            actor=actor, action=action, object_id=object, since=since, until=until, before_id=before_id, limit=limit + 1
        )
        items = [AuditEntryPublic.model_validate(r, from_attributes=True) for r in rows[:limit]]
        next_cursor = _encode_cursor(items[-1].id) if len(rows) > limit else None
        return AuditPage(items=items, limit=limit, next_cursor=next_cursor)

    return router
