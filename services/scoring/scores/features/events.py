"""How each event changes a customer's feature state. Pure: no I/O, no clock.

Every function takes the time of the event it applies (the producer's business time), never the wall
clock, so replaying the same events in the same order rebuilds exactly the same state and scores.

Functions change the state in place and return whether anything changed: False means the event was a
duplicate or a no-op, and the caller need not rescore.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime
from typing import Any

from contracts.common import InteractionType
from services.scoring.scores.features.state import (
    COMPLAINT_WINDOW,
    PURCHASE_WINDOW,
    ComplaintMark,
    FeatureState,
    PurchaseMark,
    utc,
)
from services.scoring.value.measures import REFERRAL_CATEGORY, wallet_from_attributes

# Bounded memories used only for de-duplication.
SEEN_IDS_KEPT = 500
CLOSED_COMPLAINTS_KEPT = 200

SENTIMENT_ALPHA = 0.3  # weight of the newest contact in the sentiment EWMA

# Complaint workflow states after which a complaint no longer counts as open.
CLOSED_STATUSES = frozenset({"resolved", "closed", "rejected", "followed_up", "followed up"})

NPS_RANGE = (0, 10)
CSAT_RANGE = (1, 5)


def _touch(state: FeatureState, at: datetime) -> None:
    state.first_seen_at = min(state.first_seen_at, at) if state.first_seen_at else at
    state.last_event_at = max(state.last_event_at, at) if state.last_event_at else at


def _remember(state: FeatureState, key: str) -> bool:
    """Record a dedupe key; False if it was already there (a duplicate under another event id)."""
    if key in state.seen_ids:
        return False
    state.seen_ids.append(key)
    del state.seen_ids[:-SEEN_IDS_KEPT]
    return True


def _contact(state: FeatureState, at: datetime) -> None:
    state.last_contact_at = max(state.last_contact_at, at) if state.last_contact_at else at


def _prune(state: FeatureState) -> None:
    if state.last_event_at is None:
        return
    complaints_from = state.last_event_at - COMPLAINT_WINDOW
    purchases_from = state.last_event_at - PURCHASE_WINDOW
    state.recent_complaints = [c for c in state.recent_complaints if c.at > complaints_from]
    state.recent_purchases = [p for p in state.recent_purchases if p.at > purchases_from]


def _severity(value: str | None) -> str | None:
    return None if value is None else str(value)


def record_interaction(
    state: FeatureState,
    *,
    interaction_id: str,
    type: InteractionType | str,
    occurred_at: datetime,
    amount: float | None = None,
    severity: str | None = None,
    sentiment: float | None = None,
    category: str | None = None,
) -> bool:
    """Apply interaction.recorded. Surveys are ignored: survey.answered carries their score.

    Any other interaction than a purchase, return or complaint is a service contact, unless its category
    is "referral": then it counts as a referral, worth its amount when it has one."""
    if state.erased or type == InteractionType.survey:
        return False
    severity = _severity(severity)
    if not _remember(state, f"interaction:{interaction_id}"):
        return False
    at = utc(occurred_at)
    _touch(state, at)
    _contact(state, at)
    if type == InteractionType.purchase:
        value = max(float(amount or 0), 0.0)
        state.purchases += 1
        state.total_spend += value
        state.first_purchase_at = min(state.first_purchase_at, at) if state.first_purchase_at else at
        state.last_purchase_at = max(state.last_purchase_at, at) if state.last_purchase_at else at
        state.recent_purchases.append(PurchaseMark(at=at, amount=value))
        day = at.date().isoformat()
        state.purchase_days[day] = state.purchase_days.get(day, 0.0) + value
        state.recent_purchases.sort(key=lambda p: p.at)
    elif type == InteractionType.return_:
        state.returns += 1
        state.last_return_at = max(state.last_return_at, at) if state.last_return_at else at
    elif type == InteractionType.complaint:
        state.complaints_total += 1
        state.recent_complaints.append(ComplaintMark(id=interaction_id, at=at, severity=severity))
        state.recent_complaints.sort(key=lambda c: c.at)
        # A close that overtook the recording (or a replayed recording) must not reopen it.
        if interaction_id not in state.closed_complaint_ids:
            state.open_complaint_ids[interaction_id] = severity
    elif category == REFERRAL_CATEGORY:
        state.referrals += 1
        if amount is not None:
            state.referral_amount += max(float(amount), 0.0)
            state.referrals_with_amount += 1
    else:
        state.contacts += 1
    if sentiment is not None:
        value = min(max(float(sentiment), -1.0), 1.0)
        if state.sentiment_ewma is None:
            state.sentiment_ewma = value
        else:
            state.sentiment_ewma = SENTIMENT_ALPHA * value + (1 - SENTIMENT_ALPHA) * state.sentiment_ewma
        state.sentiment_count += 1
    _prune(state)
    return True


def _regrade(state: FeatureState, complaint_id: str, severity: str | None) -> None:
    for mark in state.recent_complaints:
        if mark.id == complaint_id and severity is not None:
            mark.severity = severity


def complaint_updated(
    state: FeatureState, *, complaint_id: str, status: str, severity: str | None, changed_at: datetime
) -> bool:
    """Apply complaint.updated: a closing status closes it once (a duplicate close is a no-op); a later
    non-closing status reopens it or re-grades its severity."""
    if state.erased:
        return False
    severity = _severity(severity)
    at = utc(changed_at)
    if status.lower() in CLOSED_STATUSES:
        if complaint_id in state.closed_complaint_ids:
            return False  # a duplicate close: nothing to decrement twice
        state.open_complaint_ids.pop(complaint_id, None)
        state.overdue_complaint_ids.discard(complaint_id)
        # Remembered even if it was never seen open, so a late recording does not open it.
        state.closed_complaint_ids.append(complaint_id)
        del state.closed_complaint_ids[:-CLOSED_COMPLAINTS_KEPT]
    else:
        reopened = complaint_id in state.closed_complaint_ids
        if reopened:
            state.closed_complaint_ids.remove(complaint_id)
        elif state.open_complaint_ids.get(complaint_id, "<absent>") == severity:
            return False  # still open with the same severity: nothing a score depends on changed
        state.open_complaint_ids[complaint_id] = severity
        _regrade(state, complaint_id, severity)
    _touch(state, at)
    _prune(state)
    return True


def complaint_overdue(state: FeatureState, *, complaint_id: str, severity: str | None, at: datetime) -> bool:
    """Apply complaint.overdue: the complaint missed its SLA and is, by definition, still open."""
    if state.erased or complaint_id in state.closed_complaint_ids:
        return False
    if complaint_id in state.overdue_complaint_ids:
        return False
    state.overdue_complaint_ids.add(complaint_id)
    state.open_complaint_ids.setdefault(complaint_id, _severity(severity))
    _touch(state, utc(at))
    _prune(state)
    return True


def survey_answered(
    state: FeatureState, *, interaction_id: str, survey: str, score: int, answered_at: datetime
) -> bool:
    """Apply survey.answered (NPS 0-10 or CSAT 1-5). Raises ValueError for a score out of range."""
    if state.erased:
        return False
    kind = survey.lower()
    if kind == "nps" and not NPS_RANGE[0] <= score <= NPS_RANGE[1]:
        raise ValueError(f"NPS score {score} outside {NPS_RANGE}")
    if kind == "csat" and not CSAT_RANGE[0] <= score <= CSAT_RANGE[1]:
        raise ValueError(f"CSAT score {score} outside {CSAT_RANGE}")
    if not _remember(state, f"survey:{interaction_id}"):
        return False
    at = utc(answered_at)
    # "last" means latest by answer time, so a late-arriving older answer does not overwrite it.
    if kind == "nps":
        state.nps_count += 1
        state.nps_sum += score
        if state.last_nps_at is None or at >= state.last_nps_at:
            state.last_nps, state.last_nps_at = score, at
    elif kind == "csat":
        state.csat_count += 1
        state.csat_sum += score
        if state.last_csat_at is None or at >= state.last_csat_at:
            state.last_csat, state.last_csat_at = score, at
    _touch(state, at)
    _contact(state, at)
    _prune(state)
    return True


def churn_moment(churned_on: date | None, changed_at: datetime | None = None) -> datetime | None:
    """When a customer churned, for the training label: the start (UTC) of the churn day the customer
    master records, which may lie long before the status change that reports it (an import, a late
    update); the time of the change when no day is given. Snapshots strictly before it are training
    inputs, so nothing from the churn day or after leaks into them."""
    if churned_on is not None:
        return datetime(churned_on.year, churned_on.month, churned_on.day, tzinfo=UTC)
    return None if changed_at is None else utc(changed_at)


def customer_upserted(
    state: FeatureState,
    *,
    status: str | None = None,
    segment: str | None = None,
    attributes: dict[str, Any] | None = None,
    version: int | None = None,
    fields_changed: frozenset[str] | None = None,
    churned_at: datetime | None = None,
    owner: str | None = None,
    with_owner: bool = False,
) -> bool:
    """Apply customer.created / customer.updated. fields_changed limits an update to the named fields;
    without it, only values that are present are taken. A version older than one already applied is ignored.
    churned_at: a customer imported as churned (or won back) with the date of its last churn.
    with_owner: the event carries the customer's current owner (set or not), whatever else changed."""
    if state.erased:
        return False
    if version is not None:
        # Equal versions re-apply (idempotent); only a strictly older snapshot is stale.
        if version < state.customer_version:
            return False
        state.customer_version = version
    if status is not None:
        state.status = status
    if churned_at is not None:
        state.churned_at = utc(churned_at)
    if fields_changed is None:
        if segment is not None:
            state.segment = segment
        if attributes:
            state.attributes = dict(attributes)
    else:
        if "segment" in fields_changed:
            state.segment = segment
        if "attributes" in fields_changed:
            state.attributes = dict(attributes or {})
    if with_owner:
        state.owner = owner
    state.wallet_estimate = wallet_from_attributes(state.attributes)
    return True


def consent_changed(state: FeatureState, *, channels: dict[str, str], version: int) -> bool:
    """Apply consent.changed: the whole current consent per channel, kept by version (an older one is
    ignored, an equal one re-applies)."""
    if state.erased or version < state.consent_version:
        return False
    state.consent = dict(channels)
    state.consent_version = version
    return True


def customer_status_changed(
    state: FeatureState, *, status: str, changed_at: datetime | None = None, churned_at: datetime | None = None
) -> bool:
    """Apply customer.status_changed. A change to churned records when the customer churned:
    `churned_at` (see churn_moment) when the event gives it, else the time of the change."""
    if state.erased or state.status == status:
        return False
    state.status = status
    if status == "churned":
        moment = churned_at if churned_at is not None else changed_at
        if moment is not None:
            state.churned_at = utc(moment)
    return True


def customer_erased(state: FeatureState) -> bool:
    """Forget everything about the customer but keep a tombstone so late events do not resurrect it."""
    if state.erased:
        return False
    blank = FeatureState(customer_id=state.customer_id, erased=True)
    for f in fields(FeatureState):
        setattr(state, f.name, getattr(blank, f.name))
    return True
