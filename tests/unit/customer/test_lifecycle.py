from datetime import date

import pytest

from contracts.common import CustomerStatus as S
from services.customer.status.lifecycle import (
    ChurnReason,
    InvalidTransition,
    check_details,
    check_initial,
    check_transition,
)

TODAY = date(2026, 3, 1)


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.prospect, S.active), (S.active, S.churned), (S.churned, S.won_back), (S.won_back, S.churned)],
)
def test_the_lifecycle_allows_its_forward_moves(current, target):
    check_transition(current, target)  # raises if refused


@pytest.mark.parametrize(
    ("current", "target", "says"),
    [
        (S.prospect, S.churned, "cannot churn"),
        (S.churned, S.active, "won_back, not active"),
        (S.active, S.active, "already active"),
        (S.active, S.won_back, "allowed from active: churned"),
        (S.active, S.prospect, "allowed from active: churned"),
        (S.won_back, S.active, "allowed from won_back: churned"),
        (S.churned, S.churned, "already churned"),
    ],
)
def test_moves_outside_the_lifecycle_are_refused_with_a_reason(current, target, says):
    with pytest.raises(InvalidTransition, match=says):
        check_transition(current, target)


def test_churning_needs_a_reason_and_a_date():
    problems = check_details(S.churned, reason=None, churned_at=None, today=TODAY)
    assert sorted(p.field for p in problems) == ["churned_at", "reason"]
    assert check_details(S.churned, reason=ChurnReason.price, churned_at=TODAY, today=TODAY) == []


def test_a_churn_date_in_the_future_is_refused():
    [problem] = check_details(S.churned, reason=ChurnReason.competitor, churned_at=date(2026, 3, 2), today=TODAY)
    assert (problem.field, problem.message) == ("churned_at", "Must not lie in the future")


def test_churn_details_are_refused_for_other_moves():
    problems = check_details(S.won_back, reason=ChurnReason.price, churned_at=TODAY, today=TODAY)
    assert sorted(p.field for p in problems) == ["churned_at", "reason"]


def test_an_imported_churned_customer_needs_its_churn_details_and_a_won_back_one_may_keep_them():
    assert {p.field for p in check_initial(S.churned, reason=None, churned_at=None, today=TODAY)} == {
        "churn_reason",
        "churned_at",
    }
    assert check_initial(S.won_back, reason=ChurnReason.price, churned_at=TODAY, today=TODAY) == []
    assert [p.field for p in check_initial(S.active, reason=ChurnReason.price, churned_at=None, today=TODAY)] == [
        "churn_reason"
    ]
