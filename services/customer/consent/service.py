"""Consent and contact preferences: domain functions that change state and enqueue events, never commit.

A customer's consent is one row per channel (opt_in/opt_out with legal basis, source and the time the
customer gave or withdrew it) plus a contact profile (time zone, per-customer frequency cap and quiet
hours). Every change is a row of the consent audit trail (consent_changes) and one consent.changed
event with the whole current state and a version, committed together. A change older than the one
recorded for its channel (an ERP event arriving late) is ignored. docs/consent.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.common import ConsentSource, ConsentStatus, ContactChannel, LegalBasis
from contracts.customer import ChannelConsent, ConsentChanged, FrequencyCap, QuietHours
from servicekit.clock import utc_now
from servicekit.digest import request_digest
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error, validation_errors
from servicekit.types import as_utc
from services.customer.consent.models import (
    ChannelConsentPublic,
    Consent,
    ConsentChange,
    ConsentImportKey,
    ConsentImportReport,
    ConsentPublic,
    ConsentRow,
    ConsentRowResult,
    ConsentUpdate,
    ContactProfile,
    FrequencyCapBody,
    QuietHoursBody,
)
from services.customer.customers.models import Customer
from services.customer.customers.service import get_customer

# A consent time this far ahead of the server's clock is refused (clock skew between systems is allowed).
MAX_FUTURE = timedelta(minutes=5)
PROFILE_FIELDS = ("timezone", "frequency_cap", "quiet_hours")


@dataclass(frozen=True, slots=True)
class ChannelChange:
    channel: ContactChannel
    status: ConsentStatus
    legal_basis: LegalBasis
    source: ConsentSource
    at: datetime


class ErasedCustomer(Exception):
    """The customer's personal data was erased: its consent can no longer change."""


def _erased_problem() -> Problem:
    return Problem(
        409,
        "Customer erased",
        "This customer's personal data was erased; its consent can no longer change.",
        code="erased",
    )


def _check_not_future(at: datetime, now: datetime, field: str) -> None:
    if as_utc(at) > now + MAX_FUTURE:
        raise Problem(422, "Invalid request", code="validation", errors=[field_error(field, "lies in the future")])


async def _profile(session: AsyncSession, customer_id: str) -> ContactProfile:
    profile = await session.get(ContactProfile, customer_id)
    if profile is None:
        profile = ContactProfile(customer_id=customer_id, version=0)
        session.add(profile)
    return profile


async def _consents(session: AsyncSession, customer_id: str) -> dict[ContactChannel, Consent]:
    rows = (await session.execute(select(Consent).where(col(Consent.customer_id) == customer_id))).scalars()
    return {ContactChannel(r.channel): r for r in rows}


async def apply(
    *,
    session: AsyncSession,
    customer: Customer,
    changes: Sequence[ChannelChange],
    profile_patch: dict[str, Any] | None = None,
    profile_source: ConsentSource = ConsentSource.api,
) -> list[ContactChannel]:
    """Apply channel changes and a profile patch to a (locked) customer; returns the channels changed.

    A change equal to the recorded state, or older than it, changes nothing. When anything changed, the
    profile's version goes up and one consent.changed event carries the new state.
    """
    if customer.erased_at is not None:
        raise ErasedCustomer
    now = utc_now()
    current = await _consents(session, customer.id)
    profile = await _profile(session, customer.id)
    changed: list[ContactChannel] = []
    history: list[ConsentChange] = []
    for change in changes:
        at = as_utc(change.at)
        row = current.get(change.channel)
        if row is not None and (
            as_utc(row.at) > at or (row.status == change.status and row.legal_basis == change.legal_basis)
        ):
            continue
        previous = ConsentStatus(row.status) if row is not None else None
        if row is None:
            row = Consent(customer_id=customer.id, channel=change.channel, status=change.status, at=at)
            session.add(row)
            current[change.channel] = row
        row.status = change.status
        row.legal_basis = change.legal_basis
        row.source = change.source
        row.at = at
        row.recorded_at = now
        if change.channel not in changed:
            changed.append(change.channel)
        history.append(
            ConsentChange(
                customer_id=customer.id,
                channel=change.channel,
                status=change.status,
                previous_status=previous,
                legal_basis=change.legal_basis,
                source=change.source,
                at=at,
                version=0,
                recorded_at=now,
            )
        )
    profile_changed = False
    for name, value in (profile_patch or {}).items():
        if name == "timezone":
            if profile.timezone != value:
                profile.timezone, profile_changed = value, True
        elif name == "frequency_cap":
            cap = (value.max_touches, value.window_days) if value is not None else (None, None)
            if (profile.cap_max_touches, profile.cap_window_days) != cap:
                profile.cap_max_touches, profile.cap_window_days = cap
                profile_changed = True
        elif name == "quiet_hours":
            quiet = (value.start, value.end) if value is not None else (None, None)
            if (profile.quiet_start, profile.quiet_end) != quiet:
                profile.quiet_start, profile.quiet_end = quiet
                profile_changed = True
    if profile_changed:
        history.append(
            ConsentChange(customer_id=customer.id, source=profile_source, at=now, version=0, recorded_at=now)
        )
    if not history:
        return []
    profile.version += 1
    profile.updated_at = now
    for entry in history:
        entry.version = profile.version
    session.add_all(history)
    await session.flush()
    await enqueue(session, consent_event(customer.id, profile, current, changed, now))
    return changed


def consent_event(
    customer_id: str,
    profile: ContactProfile,
    consents: dict[ContactChannel, Consent],
    changed: Sequence[ContactChannel],
    now: datetime,
) -> ConsentChanged:
    """consent.changed: the whole current state (codes, an IANA zone name, numbers), no personal data."""
    return ConsentChanged(
        customer_id=customer_id,
        version=profile.version,
        changed=list(changed),
        channels={
            channel: ChannelConsent(status=r.status, legal_basis=r.legal_basis, source=r.source, at=as_utc(r.at))
            for channel, r in consents.items()
        },
        timezone=profile.timezone,
        frequency_cap=FrequencyCap(max_touches=profile.cap_max_touches, window_days=profile.cap_window_days)
        if profile.cap_max_touches is not None and profile.cap_window_days is not None
        else None,
        quiet_hours=QuietHours(start=profile.quiet_start, end=profile.quiet_end)
        if profile.quiet_start and profile.quiet_end
        else None,
        changed_at=now,
    )


# ---- API -------------------------------------------------------------------------------------------------


async def read(*, session: AsyncSession, customer_id: str) -> ConsentPublic:
    await get_customer(session=session, customer_id=customer_id)
    consents = await _consents(session, customer_id)
    profile = await session.get(ContactProfile, customer_id)
    return ConsentPublic(
        customer_id=customer_id,
        version=profile.version if profile else 0,
        channels={
            channel: ChannelConsentPublic(
                status=r.status, legal_basis=r.legal_basis, source=r.source, at=r.at, recorded_at=r.recorded_at
            )
            for channel, r in sorted(consents.items())
        },
        timezone=profile.timezone if profile else None,
        frequency_cap=FrequencyCapBody(max_touches=profile.cap_max_touches, window_days=profile.cap_window_days)
        if profile and profile.cap_max_touches is not None and profile.cap_window_days is not None
        else None,
        quiet_hours=QuietHoursBody(start=profile.quiet_start, end=profile.quiet_end)
        if profile and profile.quiet_start and profile.quiet_end
        else None,
        updated_at=profile.updated_at if profile else None,
    )


async def update(*, session: AsyncSession, customer_id: str, body: ConsentUpdate) -> ConsentPublic:
    """PUT /customers/{id}/consent: set the channels given and the preference fields sent."""
    now = utc_now()
    customer = await get_customer(session=session, customer_id=customer_id, for_update=True)
    changes = []
    for channel, item in body.channels.items():
        at = item.at or now
        _check_not_future(at, now, f"channels.{channel.value}.at")
        changes.append(ChannelChange(channel, item.status, item.legal_basis, item.source, at))
    patch = {name: getattr(body, name) for name in PROFILE_FIELDS if name in body.model_fields_set}
    try:
        await apply(
            session=session, customer=customer, changes=changes, profile_patch=patch, profile_source=body.source
        )
    except ErasedCustomer:
        raise _erased_problem() from None
    return await read(session=session, customer_id=customer_id)


async def history(
    *, session: AsyncSession, customer_id: str, limit: int, offset: int
) -> tuple[list[ConsentChange], int]:
    """The consent audit trail, newest first."""
    await get_customer(session=session, customer_id=customer_id)
    where = col(ConsentChange.customer_id) == customer_id
    total = (await session.execute(select(func.count()).select_from(ConsentChange).where(where))).scalar_one()
    query = select(ConsentChange).where(where).order_by(col(ConsentChange.id).desc()).offset(offset).limit(limit)
    return list((await session.execute(query)).scalars()), total


def _hash(rows: Sequence[Any]) -> str:
    return request_digest(rows)


async def bulk_import(
    *, session: AsyncSession, rows: Sequence[Any], idempotency_key: str | None = None
) -> ConsentImportReport:
    """Apply consent rows (each one customer and one channel); a report per row, in request order.

    ``applied`` changed the consent, ``unchanged`` matched (or was older than) the recorded one,
    ``rejected`` carries its errors and wrote nothing. A repeated Idempotency-Key with the same rows
    replays the first report; with other rows it is a 422.
    """
    digest = _hash(list(rows))
    if idempotency_key is not None:
        seen = await session.get(ConsentImportKey, idempotency_key)
        if seen is not None:
            if seen.request_hash != digest:
                raise Problem(
                    422,
                    "Idempotency key reused",
                    "This Idempotency-Key was used before with different rows; use a new key.",
                    code="idempotency_key_reused",
                    errors=[field_error("header.idempotency-key", "already used with a different request")],
                )
            return ConsentImportReport.model_validate(seen.report)
    now = utc_now()
    results: list[ConsentRowResult] = []
    for index, raw in enumerate(rows):
        try:
            row = ConsentRow.model_validate(raw)
        except ValidationError as exc:
            errors = [
                {**e, "field": "row"} if e["field"] == "body" else e for e in validation_errors(list(exc.errors()))
            ]
            results.append(ConsentRowResult(index=index, status="rejected", errors=errors))
            continue
        at = row.at or now
        if as_utc(at) > now + MAX_FUTURE:
            results.append(
                ConsentRowResult(index=index, status="rejected", errors=[field_error("at", "lies in the future")])
            )
            continue
        customer = await _find(session, row)
        if customer is None:
            key = "customer_id" if row.customer_id is not None else "external_ref"
            results.append(
                ConsentRowResult(index=index, status="rejected", errors=[field_error(key, "unknown customer")])
            )
            continue
        try:
            async with session.begin_nested():
                changed = await apply(
                    session=session,
                    customer=customer,
                    changes=[ChannelChange(row.channel, row.status, row.legal_basis, row.source, at)],
                )
        except ErasedCustomer:
            results.append(
                ConsentRowResult(index=index, status="rejected", errors=[field_error("customer_id", "customer erased")])
            )
            continue
        results.append(
            ConsentRowResult(index=index, status="applied" if changed else "unchanged", customer_id=customer.id)
        )
    report = ConsentImportReport(
        applied=sum(r.status == "applied" for r in results),
        unchanged=sum(r.status == "unchanged" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        rows=results,
    )
    if idempotency_key is not None:
        session.add(ConsentImportKey(key=idempotency_key, request_hash=digest, report=report.model_dump(mode="json")))
        await session.flush()
    return report


async def _find(session: AsyncSession, row: ConsentRow) -> Customer | None:
    if row.customer_id is not None:
        return await session.get(Customer, row.customer_id, with_for_update=True, populate_existing=True)
    query = select(Customer).where(col(Customer.external_ref) == row.external_ref).with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def apply_inbound(
    *,
    session: AsyncSession,
    customer_ref: str,
    change: ChannelChange,
) -> Customer | None:
    """An ERP/marketing consent event; None when no customer has this reference."""
    query = select(Customer).where(col(Customer.external_ref) == customer_ref).with_for_update()
    customer = (await session.execute(query)).scalar_one_or_none()
    if customer is None:
        return None
    await apply(session=session, customer=customer, changes=[change])
    return customer


async def purge_import_keys(*, session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(delete(ConsentImportKey).where(col(ConsentImportKey.created_at) < older_than))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


__all__ = ["ChannelChange", "apply", "apply_inbound", "bulk_import", "history", "read", "update"]
