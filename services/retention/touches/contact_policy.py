"""Contact policy: may this touch reach the customer? Consent, frequency cap and quiet hours.

Pure: no I/O, no clock (callers pass the touch's time and the customer's recent touches). Evaluated for
every playbook step that contacts the customer before its task is created (services/retention/touches.py);
a blocked touch is recorded with the reason this module gives. docs/consent.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Playbook step kind -> the channel it contacts the customer on; None: an internal task that contacts no
# one (never blocked, no touch recorded). Every step kind must be listed (a unit test checks it); a kind
# missing here is treated as a touch on an unknown channel and blocked, so a new kind fails safe.
STEP_CHANNELS: Mapping[str, str | None] = {
    "call_owner": "phone",  # the account manager calls the customer
    "executive_outreach": "phone",  # a senior manager calls the customer's decision maker
    "loyalty_offer": "email",
    "win_back_offer": "email",
    "satisfaction_survey": "email",
    "visit": "visit",  # an in-person visit at the customer's premises
    "follow_up_visit": "visit",
    "letter": "post",
    "sms": "sms",
    "service_recovery": None,  # fix the cause behind the complaint: internal work
}


class Verdict(StrEnum):
    allowed = "allowed"
    opted_out = "opted_out"  # the customer opted out of this channel
    no_opt_in = "no_opt_in"  # the channel needs an explicit opt-in and none is recorded
    quiet_hours = "quiet_hours"  # the touch would fall in the customer's quiet hours
    frequency_cap = "frequency_cap"  # the customer already had the maximum touches in the window
    unknown_channel = "unknown_channel"  # a step kind without a channel in STEP_CHANNELS


BLOCK_REASONS = tuple(v for v in Verdict if v is not Verdict.allowed)


@dataclass(frozen=True, slots=True)
class Cap:
    max_touches: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class Quiet:
    """Local wall-clock quiet hours; ``start`` after ``end`` spans midnight (21:00-08:00)."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True, slots=True)
class CustomerContact:
    """What retention knows of the customer's consent and preferences (its replica of consent.changed)."""

    channels: Mapping[str, str] = field(default_factory=dict)  # channel -> opt_in | opt_out
    timezone: str | None = None
    cap: Cap | None = None  # the customer's own cap, overriding the tier's
    quiet: Quiet | None = None  # the customer's own quiet hours, overriding the default


@dataclass(frozen=True, slots=True)
class Policy:
    """The organisation's contact policy (settings)."""

    tier_caps: Mapping[str, Cap] = field(default_factory=dict)
    default_cap: Cap | None = None  # for a tier without its own cap (and customers without a tier)
    quiet: Quiet | None = None  # default quiet hours; None: none
    quiet_channels: frozenset[str] = frozenset({"phone", "sms", "visit"})
    opt_in_channels: frozenset[str] = frozenset()  # channels needing an explicit opt-in
    default_timezone: str = "UTC"


def channel_of(step_kind: str) -> str | None:
    """The channel a step kind contacts the customer on; None for an internal task."""
    return STEP_CHANNELS.get(step_kind, "unknown")


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def zone(name: str | None, default: str) -> ZoneInfo:
    """The customer's zone; the default for none or a name this system does not know."""
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def in_quiet_hours(at: datetime, quiet: Quiet, tz: ZoneInfo) -> bool:
    """Whether the instant ``at`` (aware) falls in the quiet hours on the customer's local clock."""
    return quiet.contains(at.astimezone(tz).time().replace(tzinfo=None))


def cap_for(contact: CustomerContact, policy: Policy, tier: str | None) -> Cap | None:
    if contact.cap is not None:
        return contact.cap
    if tier is not None and tier in policy.tier_caps:
        return policy.tier_caps[tier]
    return policy.default_cap


def touches_in_window(at: datetime, window: timedelta, previous: Sequence[datetime]) -> int:
    """Allowed touches less than ``window`` away from ``at``, before or after it (touches are scheduled,
    so a later-created one can lie earlier). Allowing a touch only while this is below the cap keeps
    every rolling window at or below it: of the touches in any window, the last one allowed saw all the
    others within ``window`` of itself."""
    return sum(1 for t in previous if abs(t - at) < window)


def evaluate(
    *,
    channel: str,
    at: datetime,
    contact: CustomerContact,
    policy: Policy,
    tier: str | None,
    previous: Sequence[datetime],
) -> Verdict:
    """The verdict on one touch on ``channel`` at ``at``, given the customer's allowed touches before it.

    Order: consent (a withdrawal always wins), then quiet hours, then the frequency cap, so the reason
    recorded is the most fundamental one.
    """
    if channel == "unknown":
        return Verdict.unknown_channel
    status = contact.channels.get(channel)
    if status == "opt_out":
        return Verdict.opted_out
    if status is None and channel in policy.opt_in_channels:
        return Verdict.no_opt_in
    quiet = contact.quiet or policy.quiet
    tz = zone(contact.timezone, policy.default_timezone)
    if quiet is not None and channel in policy.quiet_channels and in_quiet_hours(at, quiet, tz):
        return Verdict.quiet_hours
    cap = cap_for(contact, policy, tier)
    if cap is not None and touches_in_window(at, cap.window, previous) >= cap.max_touches:
        return Verdict.frequency_cap
    return Verdict.allowed
