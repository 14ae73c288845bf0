"""The pure contact policy: consent, quiet hours across midnight and DST, caps over rolling windows."""

from datetime import UTC, datetime, time, timedelta

import pytest

from services.retention.playbooks.core import Action
from services.retention.touches.contact_policy import (
    STEP_CHANNELS,
    Cap,
    CustomerContact,
    Policy,
    Quiet,
    Verdict,
    channel_of,
    evaluate,
    in_quiet_hours,
    touches_in_window,
    zone,
)

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NIGHT = Quiet(time(21, 0), time(8, 0))


def verdict(channel="phone", at=NOON, contact=CustomerContact(), policy=Policy(), tier=None, previous=()):
    return evaluate(channel=channel, at=at, contact=contact, policy=policy, tier=tier, previous=list(previous))


def test_every_step_kind_has_a_channel_or_is_internal():
    assert {a.value for a in Action} <= set(STEP_CHANNELS)
    assert channel_of("call_owner") == "phone"
    assert channel_of("win_back_offer") == "email"
    assert channel_of("visit") == "visit"
    assert channel_of("service_recovery") is None
    assert channel_of("a_kind_nobody_mapped") == "unknown"
    assert verdict(channel="unknown") is Verdict.unknown_channel


def test_consent_opt_out_blocks_only_that_channel():
    contact = CustomerContact(channels={"email": "opt_out", "phone": "opt_in"})
    assert verdict("email", contact=contact) is Verdict.opted_out
    assert verdict("phone", contact=contact) is Verdict.allowed
    assert verdict("sms", contact=contact) is Verdict.allowed  # nothing recorded, no opt-in required


def test_channels_that_need_an_opt_in():
    policy = Policy(opt_in_channels=frozenset({"sms"}))
    assert verdict("sms", policy=policy) is Verdict.no_opt_in
    assert verdict("sms", policy=policy, contact=CustomerContact(channels={"sms": "opt_in"})) is Verdict.allowed


def test_opt_out_wins_over_every_other_reason():
    contact = CustomerContact(channels={"phone": "opt_out"}, quiet=NIGHT, cap=Cap(0, timedelta(days=1)))
    assert verdict("phone", at=NOON.replace(hour=23), contact=contact) is Verdict.opted_out


@pytest.mark.parametrize(
    ("hour", "minute", "quiet"),
    [(20, 59, False), (21, 0, True), (23, 59, True), (0, 0, True), (7, 59, True), (8, 0, False), (12, 0, False)],
)
def test_quiet_hours_across_midnight(hour, minute, quiet):
    at = datetime(2026, 6, 1, hour, minute, tzinfo=UTC)
    assert in_quiet_hours(at, NIGHT, zone("UTC", "UTC")) is quiet


def test_quiet_hours_within_a_day():
    lunch = Quiet(time(12, 0), time(13, 0))
    assert in_quiet_hours(NOON, lunch, zone(None, "UTC"))
    assert not in_quiet_hours(NOON + timedelta(hours=1), lunch, zone(None, "UTC"))


def test_quiet_hours_are_the_customers_local_time():
    # 20:30 UTC is 22:30 in Berlin (summer time): quiet there, not for a customer in New York (16:30)
    at = datetime(2026, 6, 1, 20, 30, tzinfo=UTC)
    policy = Policy(quiet=NIGHT)
    assert verdict(at=at, policy=policy, contact=CustomerContact(timezone="Europe/Berlin")) is Verdict.quiet_hours
    assert verdict(at=at, policy=policy, contact=CustomerContact(timezone="America/New_York")) is Verdict.allowed


def test_quiet_hours_across_dst_changes():
    tz = zone("Europe/Berlin", "UTC")
    # Spring forward (29 March 2026, 02:00 -> 03:00): 07:30 local is 05:30 UTC, quiet; 08:00 local is 06:00 UTC
    assert in_quiet_hours(datetime(2026, 3, 29, 5, 30, tzinfo=UTC), NIGHT, tz)
    assert not in_quiet_hours(datetime(2026, 3, 29, 6, 0, tzinfo=UTC), NIGHT, tz)
    # the day before (winter time) 08:00 local was 07:00 UTC
    assert in_quiet_hours(datetime(2026, 3, 28, 6, 30, tzinfo=UTC), NIGHT, tz)
    assert not in_quiet_hours(datetime(2026, 3, 28, 7, 0, tzinfo=UTC), NIGHT, tz)
    # Fall back (25 October 2026, 03:00 -> 02:00): 21:00 local is 20:00 UTC after, 19:00 UTC before
    assert in_quiet_hours(datetime(2026, 10, 25, 20, 0, tzinfo=UTC), NIGHT, tz)
    assert not in_quiet_hours(datetime(2026, 10, 25, 19, 59, tzinfo=UTC), NIGHT, tz)
    assert in_quiet_hours(datetime(2026, 10, 24, 19, 0, tzinfo=UTC), NIGHT, tz)
    # the repeated hour 02:00-03:00 local is quiet both times
    assert in_quiet_hours(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), NIGHT, tz)
    assert in_quiet_hours(datetime(2026, 10, 25, 1, 30, tzinfo=UTC), NIGHT, tz)


def test_quiet_hours_apply_to_their_channels_only_and_the_customers_own_override():
    night = NOON.replace(hour=22)
    policy = Policy(quiet=NIGHT, quiet_channels=frozenset({"phone"}))
    assert verdict("phone", at=night, policy=policy) is Verdict.quiet_hours
    assert verdict("email", at=night, policy=policy) is Verdict.allowed
    own = CustomerContact(quiet=Quiet(time(12, 0), time(14, 0)))
    assert verdict("phone", at=night, policy=policy, contact=own) is Verdict.allowed
    assert verdict("phone", at=NOON, policy=policy, contact=own) is Verdict.quiet_hours


def test_unknown_zone_falls_back_to_the_default():
    assert zone("Not/AZone", "Europe/Berlin").key == "Europe/Berlin"
    assert zone(None, "Bad/Default").key == "UTC"


def test_rolling_window_counts_touches_on_both_sides():
    week = timedelta(days=7)
    touches = [NOON - timedelta(days=8), NOON - timedelta(days=6), NOON + timedelta(days=6, hours=23)]
    assert touches_in_window(NOON, week, touches) == 2
    assert touches_in_window(NOON, week, [NOON - week]) == 0  # exactly a window away: outside


def test_frequency_cap_per_tier_default_and_customer_override():
    policy = Policy(tier_caps={"lead": Cap(1, timedelta(days=7))}, default_cap=Cap(3, timedelta(days=7)))
    one = [NOON - timedelta(days=1)]
    assert verdict(policy=policy, tier="lead", previous=one) is Verdict.frequency_cap
    assert verdict(policy=policy, tier="platinum", previous=one) is Verdict.allowed
    assert verdict(policy=policy, tier=None, previous=one * 3) is Verdict.frequency_cap
    own = CustomerContact(cap=Cap(5, timedelta(days=7)))
    assert verdict(policy=policy, tier="lead", previous=one * 4, contact=own) is Verdict.allowed
    # a touch outside the window does not count
    assert verdict(policy=policy, tier="lead", previous=[NOON - timedelta(days=8)]) is Verdict.allowed


def test_a_burst_never_exceeds_the_cap_in_any_window():
    cap = Cap(3, timedelta(days=1))
    policy = Policy(default_cap=cap)
    allowed: list[datetime] = []
    for i in range(100):
        at = NOON + timedelta(hours=i)
        if verdict(at=at, policy=policy, previous=allowed) is Verdict.allowed:
            allowed.append(at)
    for start in allowed:
        assert sum(1 for t in allowed if start <= t < start + cap.window) <= cap.max_touches
    assert len(allowed) >= 100 // 24 * 3 - 3
