"""API keys for integrations: created once (the secret is shown only then), stored hashed, scoped, revocable.

A key reads ``crmk_<id>_<secret>``. Only an HMAC-SHA256 of the secret under a server-side pepper
(GATEWAY_API_KEY_PEPPER) is stored, so a copy of the key table does not yield working keys. The id
finds the row; the hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import JSON, Column, String, select
from sqlalchemy.orm import registry
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel, col

from gateway.lru import LruDict
from gateway.routes import API_PREFIX, ROLE_PERMISSIONS
from servicekit.db import Database
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset, Page
from servicekit.problems import Problem, field_error, not_found
from servicekit.types import UtcDateTime

KEY_PREFIX = "crmk_"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
CACHE_ENTRIES = 10_000  # keys (and unknown ids) remembered per process, least recently used dropped first


class GatewayTable(SQLModel, registry=registry()):
    """Base of the gateway's tables: its own MetaData for its own migrations."""


metadata = GatewayTable.metadata


def _now() -> datetime:
    return datetime.now(UTC)


class ApiKey(GatewayTable, table=True):
    __tablename__ = "api_keys"

    id: str = SQLField(primary_key=True, max_length=32)
    name: str = SQLField(max_length=100)
    role: str = SQLField(sa_type=String(20))
    # None: every permission of the role; otherwise a subset of them.
    scopes: list[str] | None = SQLField(default=None, sa_column=Column(JSON, nullable=True))
    secret_hash: str = SQLField(max_length=64)
    created_by: str | None = SQLField(default=None, max_length=200)
    created_at: datetime = SQLField(default_factory=_now, sa_type=UtcDateTime)
    expires_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    revoked_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: str = Field("integration", description="the key's role", json_schema_extra={"enum": list(ROLE_PERMISSIONS)})
    scopes: list[str] | None = Field(None, description="a subset of the role's permissions; omit for all of them")
    expires_at: datetime | None = Field(None, description="RFC 3339 date-time with a time zone")

    @field_validator("expires_at", mode="before")
    @classmethod
    def _date_time_text(cls, value: object) -> object:
        # JSON has no date-time type: only the documented RFC 3339 text is one (a number is not a timestamp here).
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an RFC 3339 date-time, e.g. 2027-01-01T00:00:00Z")
        return value

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in ROLE_PERMISSIONS:
            raise ValueError(f"unknown role; one of {', '.join(ROLE_PERMISSIONS)}")
        return value


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    role: str
    scopes: list[str] | None
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the key itself: shown only in this response, store it now")


class ApiKeysPublic(Page[ApiKeyPublic]):
    pass


def hash_secret(secret: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """``crmk_<id>_<secret>`` -> (id, secret), or None if it is not shaped like a key."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret or len(key_id) > 32:
        return None
    return key_id, secret


def _public(row: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(row, from_attributes=True)


class KeyStore:
    """The key table plus a short per-process cache, so a key costs no database trip on most requests.

    Every entry, found or not, lives ``cache_s`` at most: a key revoked (or created) through any replica
    is seen by every other within that time, since all of them read the same table.
    """

    def __init__(self, database: Database, *, pepper: str, cache_s: float, entries: int = CACHE_ENTRIES) -> None:
        self.database = database
        self.pepper = pepper
        self.cache_s = cache_s
        self._cache = LruDict(entries)  # key id -> (row or None, monotonic expiry)

    async def create(self, data: ApiKeyCreate, *, created_by: str | None) -> ApiKeyCreated:
        if data.scopes is not None:
            unknown = sorted(set(data.scopes) - ROLE_PERMISSIONS[data.role])
            if unknown:
                raise Problem(
                    422,
                    "Invalid request",
                    f"Scopes outside the role {data.role}: {', '.join(unknown)}",
                    code="validation",
                    errors=[field_error("scopes", f"not permissions of role {data.role}: {', '.join(unknown)}")],
                )
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        row = ApiKey(
            id=key_id,
            name=data.name,
            role=data.role,
            scopes=sorted(set(data.scopes)) if data.scopes is not None else None,
            secret_hash=hash_secret(secret, self.pepper),
            created_by=created_by,
            expires_at=data.expires_at,
        )
        async with self.database.transaction() as session:
            session.add(row)
        return ApiKeyCreated(**_public(row).model_dump(), key=f"{KEY_PREFIX}{key_id}_{secret}")

    async def list(self, *, include_revoked: bool, limit: int, offset: int) -> ApiKeysPublic:
        async with self.database.sessions() as session:
            query = select(ApiKey)
            if not include_revoked:
                query = query.where(col(ApiKey.revoked_at).is_(None))
            rows = (await session.execute(query.order_by(col(ApiKey.created_at), col(ApiKey.id)))).scalars().all()
        return ApiKeysPublic(
            items=[_public(r) for r in rows[offset : offset + limit]], total=len(rows), limit=limit, offset=offset
        )

    async def get(self, key_id: str) -> ApiKey | None:
        async with self.database.sessions() as session:
            return await session.get(ApiKey, key_id)

    async def revoke(self, key_id: str) -> ApiKey | None:
        async with self.database.transaction() as session:
            row = await session.get(ApiKey, key_id)
            if row is not None and row.revoked_at is None:
                row.revoked_at = _now()
        self._cache.pop(key_id, None)
        return row

    async def verify(self, key: str) -> ApiKey | None:
        """The key's row if ``key`` is a valid, unrevoked, unexpired key; None otherwise."""
        parts = split_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        now = time.monotonic()
        cached = self._cache.fresh(key_id)
        row: ApiKey | None
        if cached is not None and cached[1] > now:
            row = cached[0]
        else:
            row = await self.get(key_id)
            if self.cache_s > 0:
                self._cache.put(key_id, (row, now + self.cache_s))
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at is not None and row.expires_at <= _now():
            return None
        if not hmac.compare_digest(row.secret_hash, hash_secret(secret, self.pepper)):
            return None
        return row


def keys_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX + "/keys", tags=["api-keys"])

    def store(request: Request) -> KeyStore:
        key_store: KeyStore = request.app.state.key_store
        return key_store

    @router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, summary="Create an API key")
    async def create_key(data: ApiKeyCreate, request: Request, response: Response) -> ApiKeyCreated:
        principal = getattr(request.state, "principal", None)
        created = await store(request).create(data, created_by=getattr(principal, "sub", None))
        response.headers["Location"] = f"{API_PREFIX}/keys/{created.id}"
        response.headers["Cache-Control"] = "no-store"
        return created

    @router.get("", response_model=ApiKeysPublic, summary="List API keys (never their secrets)")
    async def list_keys(
        request: Request,
        include_revoked: bool = False,
        limit: Limit = DEFAULT_PAGE,
        offset: Offset = 0,
    ) -> ApiKeysPublic:
        return await store(request).list(include_revoked=include_revoked, limit=limit, offset=offset)

    @router.get("/{key_id}", response_model=ApiKeyPublic, summary="One API key")
    async def get_key(key_id: str, request: Request) -> ApiKeyPublic:
        row = await store(request).get(key_id)
        if row is None:
            raise not_found("API key", key_id, detail=f"No API key with id {key_id}.", field=None)
        return _public(row)

    @router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke an API key")
    async def revoke_key(key_id: str, request: Request) -> Response:
        if await store(request).revoke(key_id) is None:
            raise not_found("API key", key_id, detail=f"No API key with id {key_id}.", field=None)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


def describe(row: ApiKey) -> dict[str, Any]:
    return _public(row).model_dump(mode="json")
