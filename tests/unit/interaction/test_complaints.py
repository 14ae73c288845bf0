from datetime import UTC, datetime, timedelta

import pytest

from services.interaction.complaints.sla import SLA_RUNNING, ComplaintStatus, needs_overdue_flag
from services.interaction.complaints.workflow import (
    TRANSITIONS,
    ComplaintCategory,
    TransitionRefused,
    allowed_next,
    category_of,
    check_transition,
)

S = ComplaintStatus
WORKFLOW = [
    (S.open, S.acknowledged),
    (S.acknowledged, S.valid),
    (S.acknowledged, S.rejected),
    (S.valid, S.resolved),
    (S.resolved, S.followed_up),
    (S.followed_up, S.closed),
    (S.rejected, S.closed),
]


@pytest.mark.parametrize(("current", "to"), WORKFLOW)
def test_every_step_of_the_crm_workflow_is_allowed(current, to):
    check_transition(current, to, resolution="Replaced the parcel" if to == S.resolved else None)


@pytest.mark.parametrize(
    ("current", "to"),
    [(c, t) for c in S for t in S if (c, t) not in WORKFLOW],
)
def test_every_other_step_is_refused_with_409_naming_to(current, to):
    with pytest.raises(TransitionRefused) as refused:
        check_transition(current, to, resolution="anything")
    assert (refused.value.status, refused.value.field) == (409, "to")


def test_a_refusal_names_the_steps_that_are_possible():
    with pytest.raises(TransitionRefused, match="can only move to: rejected, valid"):
        check_transition("acknowledged", "closed", None)


def test_a_closed_complaint_has_no_next_step():
    assert allowed_next("closed") == frozenset()
    with pytest.raises(TransitionRefused, match="no further step"):
        check_transition("closed", "open", None)


@pytest.mark.parametrize("resolution", [None, "", "   "])
def test_resolving_requires_a_resolution_text_and_says_so_as_422(resolution):
    with pytest.raises(TransitionRefused) as refused:
        check_transition(S.valid, S.resolved, resolution)
    assert (refused.value.status, refused.value.field) == (422, "resolution")


def test_every_status_is_in_the_transition_table_and_closed_is_reachable_from_open():
    assert set(TRANSITIONS) == set(S)
    reachable, frontier = {S.open}, [S.open]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(S)


def test_categories_are_the_six_of_crm_practice_and_none_means_other():
    assert [c.value for c in ComplaintCategory] == [
        "product_quality",
        "service",
        "delivery",
        "billing",
        "staff",
        "other",
    ]
    assert category_of(None) == ComplaintCategory.other
    assert category_of(" Delivery ") == ComplaintCategory.delivery
    with pytest.raises(ValueError):
        category_of("weather")


DUE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = DUE + timedelta(minutes=1)


@pytest.mark.parametrize("status", sorted(SLA_RUNNING))
def test_a_running_complaint_past_due_and_not_flagged_needs_the_flag(status):
    assert needs_overdue_flag(DUE, status, None, LATER)


@pytest.mark.parametrize(
    ("due", "status", "overdue_at", "now"),
    [
        (DUE, S.open, LATER, LATER),  # flagged before: once per complaint
        (DUE, S.open, None, DUE),  # exactly at the due time is still in time
        (DUE, S.rejected, None, LATER),  # the SLA stops with a verdict or a solution
        (DUE, S.resolved, None, LATER),
        (DUE, S.followed_up, None, LATER),
        (DUE, S.closed, None, LATER),
        (None, S.open, None, LATER),
    ],
)
def test_no_flag_when_flagged_before_in_time_stopped_or_without_due_time(due, status, overdue_at, now):
    assert not needs_overdue_flag(due, status, overdue_at, now)
