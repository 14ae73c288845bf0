"""Settings an administrator may change while the platform runs (docs/runtime-settings.md).

A service names the fields of its settings that a person tunes at run time (``ServiceSpec.tunable``). An
override is a row of ``setting_overrides``, checked exactly as the setting is at start-up (the service's
settings class validates a copy holding the new value: same type, bounds and validators), and every change
is kept in ``setting_changes`` (who, when, the old and the new value). Code reads the value in force with
``await current(session, settings)``: each process reads the overrides at most once every
``runtime_settings_cache_s`` seconds, and at once after a change made through it.

The routes (``/settings/<service>``) are added by the app factory to every service that declares tunables;
the gateway lets administrators only reach them.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Path, Request
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from sqlalchemy import Column, Index, MetaData, String, Table, Text, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.clock import utc_now
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset, Page
from servicekit.problems import Problem, field_error, not_found
from servicekit.settings import ServiceSettings
from servicekit.tables import BigIntId
from servicekit.types import UtcDateTime

S = TypeVar("S", bound=ServiceSettings)
Source = Literal["default", "env", "override"]

_metadata = MetaData()

SETTING_OVERRIDES = Table(
    "setting_overrides",
    _metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),  # JSON (a setting may itself be null)
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

SETTING_CHANGES = Table(
    "setting_changes",
    _metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("action", String(10), nullable=False),  # set | reset
    Column("old_value", Text, nullable=False),  # JSON: the value in force before
    Column("new_value", Text, nullable=False),  # JSON: the value in force after
    Column("changed_by", String(200), nullable=False),
    Column("changed_at", UtcDateTime(), nullable=False),
    Index("ix_setting_changes_changed_at", "changed_at"),
)


def add_settings_tables(metadata: MetaData) -> None:
    """Copies the two tables into a service's MetaData (a service with tunables; its migration creates them)."""
    for table in (SETTING_OVERRIDES, SETTING_CHANGES):
        table.to_metadata(metadata)


@dataclass(frozen=True)
class Tunable:
    """A field of the service's settings that an administrator may change at run time, and what it does."""

    name: str
    description: str


# ---- pure functions ----------------------------------------------------------------------------------------


class InvalidValue(ValueError):
    """The value is not one the setting accepts; the message says why, in words."""


def validated(base: S, name: str, value: Any) -> Any:
    """``value`` as the setting holds it, JSON-ready; raises InvalidValue as start-up would refuse it."""
    data = base.model_dump()
    data[name] = value
    try:
        checked = type(base).model_validate(data)
    except ValidationError as exc:
        mine = [e for e in exc.errors() if e.get("loc") and e["loc"][0] == name] or exc.errors()
        raise InvalidValue("; ".join(_message(e) for e in mine)) from None
    return json_value(checked, name)


def _message(error: Any) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ())[1:])
    return f"{loc}: {error['msg']}" if loc else str(error["msg"])


def json_value(settings: ServiceSettings, name: str) -> Any:
    return settings.model_dump(mode="json", include={name})[name]


def apply(base: S, overrides: dict[str, Any]) -> S:
    """The settings in force: ``base`` with every override that is still valid (an override a newer release
    no longer accepts is skipped, and the configured value stays)."""
    good = {}
    for name, value in overrides.items():
        try:
            validated(base, name, value)
        except InvalidValue:
            continue
        good[name] = value
    if not good:
        return base
    return type(base).model_validate({**base.model_dump(), **good})


def default_of(settings_cls: type[ServiceSettings], name: str) -> Any:
    field = settings_cls.model_fields[name]
    default = field.get_default(call_default_factory=True)
    return orjson.loads(orjson.dumps(default, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError


def source_of(base: ServiceSettings, name: str, overridden: bool) -> Source:
    if overridden:
        return "override"
    return "env" if name in base.model_fields_set else "default"


def schema_of(settings_cls: type[ServiceSettings], name: str) -> dict[str, Any]:
    """The setting's JSON Schema (type, bounds, pattern), with the definitions it refers to."""
    document = settings_cls.model_json_schema()
    schema = dict(document["properties"][name])
    if "$defs" in document and "$ref" in orjson.dumps(schema).decode():
        schema["$defs"] = document["$defs"]
    return schema


def actor(principal: str) -> str:
    """Who made a change, from the principal the gateway signed (``kind=..&role=..&sub=..``)."""
    fields = parse_qs(principal)
    sub = (fields.get("sub") or [""])[0]
    role = (fields.get("role") or [""])[0]
    return (f"{sub} ({role})" if role else sub)[:200] or "unknown"


# ---- the overrides in force, per process ------------------------------------------------------------------

_cache: dict[tuple[str, str], tuple[float, dict[str, Any], ServiceSettings]] = {}


def _cache_key(session: AsyncSession, base: ServiceSettings) -> tuple[str, str]:
    return base.name, base.database_url


async def _overrides(session: AsyncSession) -> dict[str, Any]:
    rows = (await session.execute(select(SETTING_OVERRIDES.c.name, SETTING_OVERRIDES.c.value))).all()
    return {row.name: orjson.loads(row.value) for row in rows}


async def current(session: AsyncSession, base: S) -> S:
    """The settings in force: the configured ones with the administrators' overrides applied."""
    key = _cache_key(session, base)
    cached = _cache.get(key)
    now = time.monotonic()
    if cached is not None and now - cached[0] < base.runtime_settings_cache_s:
        return cached[2]  # type: ignore[return-value]
    overrides = await _overrides(session)
    effective = apply(base, overrides)
    _cache[key] = (now, overrides, effective)
    return effective


def cached(base: S) -> S | None:
    """current()'s answer when it needs no read (the cached overrides are fresh), else None."""
    cached = _cache.get((base.name, base.database_url))
    if cached is None or time.monotonic() - cached[0] >= base.runtime_settings_cache_s:
        return None
    return cached[2]  # type: ignore[return-value]


def forget(base: ServiceSettings) -> None:
    """Drop this process's cached overrides (after a change), so the next read sees the database."""
    _cache.pop((base.name, base.database_url), None)


# ---- the routes -----------------------------------------------------------------------------------------


class SettingPublic(BaseModel):
    name: str
    description: str
    value: Any = Field(description="the value in force")
    default: Any = Field(description="the value the code sets when nothing is configured")
    configured: Any = Field(description="the value configured at start-up (environment or default)")
    source: Source = Field(description="where the value in force comes from")
    updated_by: str | None = None
    updated_at: datetime | None = None
    json_schema: dict[str, Any] = Field(description="type and bounds the value must meet")


class SettingsPublic(BaseModel):
    service: str
    items: list[SettingPublic]


class SettingUpdate(BaseModel):
    value: Any = Field(description="the new value, of the setting's own type (JSON)")


class SettingChangePublic(BaseModel):
    id: int
    name: str
    action: Literal["set", "reset"]
    old_value: Any
    new_value: Any
    changed_by: str
    changed_at: datetime


class SettingChangesPublic(Page[SettingChangePublic]):
    pass


def settings_router(service: str, tunables: tuple[Tunable, ...]) -> APIRouter:
    """GET /settings/<service>, PUT and DELETE /settings/<service>/{name}, GET /settings/<service>/changes."""
    router = APIRouter(tags=["settings"])
    by_name = {t.name: t for t in tunables}
    base_path = f"/settings/{service}"
    # The path names one of the tunables: an enum in the API, so another name is a 422 naming it.
    Name = Annotated[str, Path(json_schema_extra={"enum": list(by_name)}), AfterValidator(_one_of(tuple(by_name)))]

    def tunable(name: str) -> Tunable:
        if name not in by_name:
            raise not_found("setting", name, field="name", detail=f"No run-time setting named {name}")
        return by_name[name]

    async def rows(session: AsyncSession) -> dict[str, Any]:
        result = await session.execute(select(SETTING_OVERRIDES))
        return {row.name: row for row in result}

    def public(base: ServiceSettings, t: Tunable, row: Any) -> SettingPublic:
        configured = json_value(base, t.name)
        value = configured
        if row is not None:
            try:
                value = validated(base, t.name, orjson.loads(row.value))
            except InvalidValue:
                row = None
        return SettingPublic(
            name=t.name,
            description=t.description,
            value=value,
            default=default_of(type(base), t.name),
            configured=configured,
            source=source_of(base, t.name, row is not None),
            updated_by=row.updated_by if row is not None else None,
            updated_at=row.updated_at if row is not None else None,
            json_schema=schema_of(type(base), t.name),
        )

    @router.get(base_path, response_model=SettingsPublic)
    async def list_settings(request: Request, session: SessionDep) -> SettingsPublic:
        """Every run-time setting: the value in force, the default, the configured value and where it comes from."""
        base: ServiceSettings = request.app.state.settings
        found = await rows(session)
        return SettingsPublic(service=service, items=[public(base, t, found.get(t.name)) for t in tunables])

    @router.api_route(f"{base_path}/changes", methods=["PUT", "DELETE"], include_in_schema=False)
    async def changes_is_read_only() -> None:
        # Declared before /{name}: the change log is not a setting, so a write to it is a 405, not a 422.
        raise Problem(405, "Method not allowed", "The change log is read only.", headers={"Allow": "GET"})

    @router.put(f"{base_path}/{{name}}", response_model=SettingPublic)
    async def put_setting(name: Name, data: SettingUpdate, request: Request, session: SessionDep) -> SettingPublic:
        """Override a setting until reset; it applies without a restart. 422 names the value when the setting
        refuses it (its type and bounds are those checked at start-up)."""
        t = tunable(name)
        base: ServiceSettings = request.app.state.settings
        try:
            value = validated(base, name, data.value)
        except InvalidValue as exc:
            raise Problem(
                422,
                "Invalid setting value",
                f"{name}: {exc}",
                code="validation_error",
                errors=[field_error("value", str(exc))],
            ) from None
        old = (await rows(session)).get(name)
        before = public(base, t, old).value
        who, now, encoded = actor(_principal(request)), utc_now(), orjson.dumps(value).decode()
        if old is None:
            await session.execute(
                SETTING_OVERRIDES.insert().values(name=name, value=encoded, updated_by=who, updated_at=now)
            )
        else:
            await session.execute(
                SETTING_OVERRIDES.update()
                .where(SETTING_OVERRIDES.c.name == name)
                .values(value=encoded, updated_by=who, updated_at=now)
            )
        await _record(session, name, "set", before, value, who, now)
        await session.commit()
        forget(base)
        return public(base, t, (await rows(session)).get(name))

    @router.delete(f"{base_path}/{{name}}", response_model=SettingPublic)
    async def reset_setting(name: Name, request: Request, session: SessionDep) -> SettingPublic:
        """Drop the override: the configured value (environment or default) is in force again."""
        t = tunable(name)
        base: ServiceSettings = request.app.state.settings
        old = (await rows(session)).get(name)
        if old is not None:
            before = public(base, t, old).value
            await session.execute(delete(SETTING_OVERRIDES).where(SETTING_OVERRIDES.c.name == name))
            now = utc_now()
            await _record(session, name, "reset", before, json_value(base, name), actor(_principal(request)), now)
            await session.commit()
            forget(base)
        return public(base, t, None)

    @router.get(f"{base_path}/changes", response_model=SettingChangesPublic)
    async def list_changes(
        session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
    ) -> SettingChangesPublic:
        """Every change of a run-time setting, newest first: who, when, the value before and after."""
        total = (await session.execute(select(func.count()).select_from(SETTING_CHANGES))).scalar_one()
        result = await session.execute(
            select(SETTING_CHANGES)
            .order_by(SETTING_CHANGES.c.changed_at.desc(), SETTING_CHANGES.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        items = [
            SettingChangePublic(
                id=row.id,
                name=row.name,
                action=row.action,
                old_value=orjson.loads(row.old_value),
                new_value=orjson.loads(row.new_value),
                changed_by=row.changed_by,
                changed_at=row.changed_at,
            )
            for row in result
        ]
        return SettingChangesPublic(items=items, total=total, limit=limit, offset=offset)

    return router


def _one_of(names: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"not a run-time setting; one of {list(names)}")
        return value

    return check


def _principal(request: Request) -> str:
    state = request.scope.get("state") or {}
    return str(state.get("principal") or "")


async def _record(session: AsyncSession, name: str, action: str, old: Any, new: Any, who: str, at: datetime) -> None:
    await session.execute(
        SETTING_CHANGES.insert().values(
            name=name,
            action=action,
            old_value=orjson.dumps(old).decode(),
            new_value=orjson.dumps(new).decode(),
            changed_by=who,
            changed_at=at,
        )
    )
