"""The customer status lifecycle as pure rules: which transitions are allowed and what each one needs.

    prospect -> active -> churned -> won_back -> churned -> won_back ...

* A prospect cannot churn: it never was a customer, and counting lost prospects as churn would
  distort the churn rate and the labels the churn model learns from. (Drop a prospect by erasing or
  tagging it.)
* A churned customer comes back as ``won_back``, never as plain ``active``: the win-back is what the
  retention metrics count. ``won_back`` behaves like ``active`` otherwise and may churn again.
* Churning needs the day it happened (not in the future) and one reason code.

No I/O here; the service applies the decision and writes the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from contracts.common import CustomerStatus


class ChurnReason(StrEnum):
    """Why a customer left: CRM teaching's two lists, company side first, then customer side.

    ``price`` and ``other`` predate the full taxonomy and stay valid codes; the retired
    ``service_quality`` is read as ``poor_service`` (LEGACY_REASONS; the 2026-12-01 migration rewrote
    stored rows). Each code's side and whether the departure was voluntary are in REASON_FACTS.
    """

    # company side: causes inside the company
    product_quality = "product_quality"
    poor_service = "poor_service"
    staff_turnover = "staff_turnover"  # the account manager left and took the customer along
    lack_of_innovation = "lack_of_innovation"
    deliberately_dropped = "deliberately_dropped"  # the company chose to stop serving the customer
    price = "price"  # the company's pricing (kept from the first taxonomy)
    # customer side
    competitor = "competitor"
    changed_needs = "changed_needs"
    bad_faith_departure = "bad_faith_departure"  # e.g. left owing money or breaking the contract
    relocation = "relocation"  # objective cause: the customer moved away
    closure = "closure"  # objective cause: the business closed (or the person died)
    other = "other"  # side unknown; the note says more


class ChurnSide(StrEnum):
    company = "company"
    customer = "customer"
    unknown = "unknown"


@dataclass(frozen=True, slots=True)
class ReasonFacts:
    side: ChurnSide
    voluntary: bool  # False: the customer did not choose to leave (dropped by us, moved away, closed)


REASON_FACTS: dict[ChurnReason, ReasonFacts] = {
    ChurnReason.product_quality: ReasonFacts(ChurnSide.company, True),
    ChurnReason.poor_service: ReasonFacts(ChurnSide.company, True),
    ChurnReason.staff_turnover: ReasonFacts(ChurnSide.company, True),
    ChurnReason.lack_of_innovation: ReasonFacts(ChurnSide.company, True),
    ChurnReason.deliberately_dropped: ReasonFacts(ChurnSide.company, False),
    ChurnReason.price: ReasonFacts(ChurnSide.company, True),
    ChurnReason.competitor: ReasonFacts(ChurnSide.customer, True),
    ChurnReason.changed_needs: ReasonFacts(ChurnSide.customer, True),
    ChurnReason.bad_faith_departure: ReasonFacts(ChurnSide.customer, True),
    ChurnReason.relocation: ReasonFacts(ChurnSide.customer, False),
    ChurnReason.closure: ReasonFacts(ChurnSide.customer, False),
    ChurnReason.other: ReasonFacts(ChurnSide.unknown, True),
}

# Codes of the first taxonomy that were renamed: still accepted on input and read as the new code.
LEGACY_REASONS: dict[str, ChurnReason] = {"service_quality": ChurnReason.poor_service}


def canonical_reason(value: object) -> object:
    """A retired code as its successor; anything else unchanged (pydantic then checks it)."""
    return LEGACY_REASONS.get(value, value) if isinstance(value, str) else value


def facts_of(reason: ChurnReason | str | None) -> ReasonFacts | None:
    if reason is None:
        return None
    try:
        return REASON_FACTS[ChurnReason(LEGACY_REASONS.get(reason, reason))]
    except ValueError:
        return None


ALLOWED: dict[CustomerStatus, frozenset[CustomerStatus]] = {
    CustomerStatus.prospect: frozenset({CustomerStatus.active}),
    CustomerStatus.active: frozenset({CustomerStatus.churned}),
    CustomerStatus.churned: frozenset({CustomerStatus.won_back}),
    CustomerStatus.won_back: frozenset({CustomerStatus.churned}),
}

# Statuses whose record may carry churn details (won_back keeps those of its last churn).
CHURN_DETAIL_STATUSES = frozenset({CustomerStatus.churned, CustomerStatus.won_back})


class InvalidTransition(Exception):
    """The requested transition is not part of the lifecycle (answered with 409)."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """Input that can never be right for this transition (answered with 422 naming the field)."""

    field: str
    message: str


def allowed_targets(current: CustomerStatus) -> frozenset[CustomerStatus]:
    return ALLOWED[current]


def check_transition(current: CustomerStatus, target: CustomerStatus) -> None:
    """Raise InvalidTransition, with a reason a person can act on, unless current -> target is allowed."""
    if target in ALLOWED[current]:
        return
    if current == target:
        raise InvalidTransition(f"The customer is already {current.value}.")
    if current == CustomerStatus.prospect and target == CustomerStatus.churned:
        raise InvalidTransition("A prospect never became a customer, so it cannot churn; activate it first.")
    if current == CustomerStatus.churned and target == CustomerStatus.active:
        raise InvalidTransition("A churned customer who returns is won_back, not active.")
    targets = ", ".join(sorted(s.value for s in ALLOWED[current])) or "none"
    raise InvalidTransition(f"{current.value} cannot become {target.value}; allowed from {current.value}: {targets}.")


def check_details(
    target: CustomerStatus, *, reason: ChurnReason | None, churned_at: date | None, today: date
) -> list[FieldProblem]:
    """What is missing or out of place for a move into `target` (empty when the details fit)."""
    problems: list[FieldProblem] = []
    if target == CustomerStatus.churned:
        if reason is None:
            problems.append(FieldProblem("reason", "Required when the status becomes churned"))
        if churned_at is None:
            problems.append(FieldProblem("churned_at", "Required when the status becomes churned"))
    else:
        if reason is not None:
            problems.append(FieldProblem("reason", "Only allowed when the status becomes churned"))
        if churned_at is not None:
            problems.append(FieldProblem("churned_at", "Only allowed when the status becomes churned"))
    if churned_at is not None and churned_at > today:
        problems.append(FieldProblem("churned_at", "Must not lie in the future"))
    return problems


def check_initial(
    status: CustomerStatus, *, reason: ChurnReason | None, churned_at: date | None, today: date
) -> list[FieldProblem]:
    """Rules for a customer created (or imported) directly in `status`, e.g. history with past churns.

    A churned customer needs its churn details; a won_back one may carry those of its last churn.
    """
    problems: list[FieldProblem] = []
    if status == CustomerStatus.churned:
        if reason is None:
            problems.append(FieldProblem("churn_reason", "Required for a churned customer"))
        if churned_at is None:
            problems.append(FieldProblem("churned_at", "Required for a churned customer"))
    elif status not in CHURN_DETAIL_STATUSES:
        if reason is not None:
            problems.append(FieldProblem("churn_reason", "Only allowed for a churned or won_back customer"))
        if churned_at is not None:
            problems.append(FieldProblem("churned_at", "Only allowed for a churned or won_back customer"))
    if churned_at is not None and churned_at > today:
        problems.append(FieldProblem("churned_at", "Must not lie in the future"))
    return problems
