"""Alert rules: which scores, complaints and survey answers raise a churn alert, and how severe it is.

Pure: no I/O, no clock. A rule is plain data (kind + reason code + severity + parameters), so the rules
stored in the database, an unsaved rule body being previewed and the rules of a unit test all go
through the same evaluate(). The customer's recent score history and tier are passed in as a Context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from contracts.common import Severity
from contracts.customer import VALUE_TIERS
from contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from contracts.scoring import Factor, ScoreUpdated, ScoreValues
from servicekit.events.envelope import EventData
from servicekit.types import as_utc
from services.retention.rules.causes import is_lapse


class RuleKind(StrEnum):
    churn_risk_above = "churn_risk_above"
    risk_jump = "risk_jump"
    p_alive_below = "p_alive_below"
    severe_complaint = "severe_complaint"
    complaint_overdue = "complaint_overdue"
    low_survey = "low_survey"
    lifecycle_decline = "lifecycle_decline"


class Reason(StrEnum):
    """Reason codes of the default rules. Alerts store the code as a string, so rules may add codes."""

    high_churn_risk = "high_churn_risk"
    risk_jump = "risk_jump"
    key_customer_fading = "key_customer_fading"
    severe_complaint = "severe_complaint"
    complaint_overdue = "complaint_overdue"
    low_satisfaction = "low_satisfaction"
    lifecycle_decline = "lifecycle_decline"
    churned = "churned"  # not a rule: the playbook run when a customer churns (win-back)


DEFAULT_REASON: dict[RuleKind, str] = {
    RuleKind.churn_risk_above: Reason.high_churn_risk,
    RuleKind.risk_jump: Reason.risk_jump,
    RuleKind.p_alive_below: Reason.key_customer_fading,
    RuleKind.severe_complaint: Reason.severe_complaint,
    RuleKind.complaint_overdue: Reason.complaint_overdue,
    RuleKind.low_survey: Reason.low_satisfaction,
    RuleKind.lifecycle_decline: Reason.lifecycle_decline,
}

# Which consumed event type each kind watches (preview only replays those).
WATCHES: dict[RuleKind, str] = {
    RuleKind.churn_risk_above: ScoreUpdated.event_type,
    RuleKind.risk_jump: ScoreUpdated.event_type,
    RuleKind.p_alive_below: ScoreUpdated.event_type,
    RuleKind.lifecycle_decline: ScoreUpdated.event_type,
    RuleKind.severe_complaint: ComplaintOpened.event_type,
    RuleKind.complaint_overdue: ComplaintOverdue.event_type,
    RuleKind.low_survey: SurveyAnswered.event_type,
}

DECLINE = "decline"

_SEVERITY_RANK = {Severity.low: 0, Severity.medium: 1, Severity.high: 2, Severity.critical: 3}


def worse(a: Severity | str, b: Severity | str) -> Severity:
    """The more severe of two severities."""
    a, b = Severity(a), Severity(b)
    return a if _SEVERITY_RANK[a] >= _SEVERITY_RANK[b] else b


def value_at_risk(score: ScoreValues) -> float | None:
    """Expected value lost if nothing is done: P(churn) x CLV. Unknown while CLV is unknown."""
    if score.clv is None:
        return None
    return round(score.churn_risk * max(score.clv, 0.0), 2)


@dataclass(frozen=True, slots=True)
class RuleParams:
    """Every kind's parameters; validate() says which ones a kind needs."""

    threshold: float | None = None  # churn_risk_above (risk >=), p_alive_below (p_alive <)
    high_at: float | None = None  # churn_risk_above: at or above this the alert is high
    delta: float | None = None  # risk_jump: rise in churn risk ...
    within_days: float | None = None  # ... within this many days
    tiers: frozenset[str] = frozenset()  # any kind: only customers of these value tiers (empty = all)
    severities: frozenset[Severity] = frozenset()  # complaint kinds: only these (empty = all, overdue only)
    nps_max: int | None = None  # low_survey: NPS answer at or below
    csat_max: int | None = None  # low_survey: CSAT answer at or below


@dataclass(frozen=True, slots=True)
class Rule:
    kind: RuleKind
    severity: Severity
    reason: str = ""
    params: RuleParams = field(default_factory=RuleParams)
    id: str = ""
    name: str = ""

    @property
    def reason_code(self) -> str:
        return self.reason or DEFAULT_REASON[self.kind]


def validate(kind: RuleKind, params: RuleParams) -> list[tuple[str, str]]:
    """(field, message) for each parameter the kind needs but lacks or has out of range."""
    errors: list[tuple[str, str]] = []

    def need(name: str, value: float | None, low: float, high: float) -> None:
        if value is None:
            errors.append((f"params.{name}", f"required for {kind}"))
        elif not low <= value <= high:
            errors.append((f"params.{name}", f"must be between {low} and {high}"))

    if kind in (RuleKind.churn_risk_above, RuleKind.p_alive_below):
        need("threshold", params.threshold, 0.0, 1.0)
    if kind == RuleKind.churn_risk_above and params.high_at is not None:
        if not 0.0 <= params.high_at <= 1.0:
            errors.append(("params.high_at", "must be between 0.0 and 1.0"))
        elif params.threshold is not None and params.high_at < params.threshold:
            errors.append(("params.high_at", "must not be below threshold"))
    if kind == RuleKind.risk_jump:
        need("delta", params.delta, 0.01, 1.0)
        need("within_days", params.within_days, 0.01, 365.0)
    if kind == RuleKind.p_alive_below and not params.tiers:
        errors.append(("params.tiers", "name the value tiers to watch, e.g. [platinum, gold]"))
    if kind == RuleKind.severe_complaint and not params.severities:
        errors.append(("params.severities", "required for severe_complaint"))
    if kind == RuleKind.low_survey:
        if params.nps_max is None and params.csat_max is None:
            errors.append(("params.nps_max", "give nps_max, csat_max or both"))
        if params.nps_max is not None and not 0 <= params.nps_max <= 10:
            errors.append(("params.nps_max", "must be between 0 and 10"))
        if params.csat_max is not None and not 1 <= params.csat_max <= 5:
            errors.append(("params.csat_max", "must be between 1 and 5"))
    unknown = sorted(params.tiers - set(VALUE_TIERS))
    if unknown:
        errors.append(("params.tiers", f"unknown tier(s) {unknown}; choose from {list(VALUE_TIERS)}"))
    return errors


@dataclass(frozen=True, slots=True)
class ScorePoint:
    at: datetime
    churn_risk: float
    lifecycle_stage: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What the rules may know about the customer beyond the event itself."""

    tier: str | None = None  # the customer's value tier when the event is not a score that carries one
    history: tuple[ScorePoint, ...] = ()  # earlier scores of this customer (any order)


@dataclass(frozen=True, slots=True)
class Trigger:
    """One rule firing on one event: the alert it asks for and the evidence behind it."""

    reason: str
    severity: Severity
    observed_at: datetime  # when the evidence was true (the event's own time), for ordering
    factors: tuple[Factor, ...] = ()
    churn_risk: float | None = None
    value_at_risk: float | None = None
    rule_id: str = ""
    kind: str = ""


def tier_of(data: EventData, context: Context) -> str | None:
    if context.tier is not None:
        return context.tier
    if isinstance(data, ScoreUpdated):
        return data.current.value_tier
    return None


def evaluate(data: EventData, rules: Iterable[Rule], context: Context = Context()) -> list[Trigger]:
    """Every trigger the rules raise for one consumed event (others raise none)."""
    tier = tier_of(data, context)
    fired = []
    for rule in rules:
        if rule.params.tiers and tier not in rule.params.tiers:
            continue
        trigger = _evaluate_one(rule, data, context)
        if trigger is not None:
            fired.append(trigger)
    return fired


def _evaluate_one(rule: Rule, data: EventData, context: Context) -> Trigger | None:
    p = rule.params
    if isinstance(data, ScoreUpdated):
        current = data.current
        base: dict[str, Any] = {
            "reason": rule.reason_code,
            "observed_at": data.computed_at,
            "churn_risk": current.churn_risk,
            "value_at_risk": value_at_risk(current),
            "rule_id": rule.id,
            "kind": str(rule.kind),
        }
        if rule.kind == RuleKind.churn_risk_above and p.threshold is not None:
            risk_limit = p.threshold
            if current.churn_risk < risk_limit or _still_across(data, lambda v: v.churn_risk >= risk_limit):
                return None
            high = p.high_at is not None and current.churn_risk >= p.high_at
            severity = worse(rule.severity, Severity.high) if high else rule.severity
            return Trigger(severity=severity, factors=tuple(data.factors), **base)
        if rule.kind == RuleKind.risk_jump and p.delta is not None and p.within_days is not None:
            low = _lowest_risk_before(data, context.history, timedelta(days=p.within_days))
            if low is None or current.churn_risk - low < p.delta - 1e-9:
                return None
            jump = Factor(
                code="risk_jump",
                label=f"Churn risk rose from {low:.0%} to {current.churn_risk:.0%} within {p.within_days:g} days",
                contribution=round(current.churn_risk - low, 4),
            )
            return Trigger(severity=rule.severity, factors=(jump, *data.factors), **base)
        if rule.kind == RuleKind.p_alive_below and p.threshold is not None:
            alive_limit = p.threshold
            if current.p_alive is None or current.p_alive >= alive_limit:
                return None
            if _still_across(data, lambda v: v.p_alive is not None and v.p_alive < alive_limit):
                return None
            fading = Factor(
                code="p_alive_low",
                label=f"Only {current.p_alive:.0%} likely to still be an active buyer",
                contribution=round(1 - current.p_alive, 4),
            )
            return Trigger(severity=rule.severity, factors=(fading, *data.factors), **base)
        if rule.kind == RuleKind.lifecycle_decline:
            if current.lifecycle_stage != DECLINE or _previous_stage(data, context.history) == DECLINE:
                return None
            decline = Factor(code="lifecycle_decline", label="Relationship moved into decline", contribution=1.0)
            return Trigger(severity=rule.severity, factors=(decline, *data.factors), **base)
        return None
    if isinstance(data, ComplaintOpened) and rule.kind == RuleKind.severe_complaint:
        if data.severity not in p.severities:
            return None
        about = f" about {data.category}" if data.category else ""
        evidence = Factor(
            code=f"complaint_{data.severity}",
            label=f"{data.severity.capitalize()} complaint opened{about}",
            contribution=1.0,
        )
        return Trigger(
            reason=rule.reason_code,
            # The complaint's own severity, never below the rule's.
            severity=worse(rule.severity, data.severity),
            observed_at=data.opened_at,
            factors=(evidence,),
            rule_id=rule.id,
            kind=str(rule.kind),
        )
    if isinstance(data, ComplaintOverdue) and rule.kind == RuleKind.complaint_overdue:
        if p.severities and data.severity not in p.severities:
            return None
        evidence = Factor(
            code="complaint_overdue",
            label=f"{data.severity.capitalize()} complaint not resolved by its due date",
            contribution=1.0,
        )
        return Trigger(
            reason=rule.reason_code,
            severity=rule.severity,
            observed_at=data.due_at,
            factors=(evidence,),
            rule_id=rule.id,
            kind=str(rule.kind),
        )
    if isinstance(data, SurveyAnswered) and rule.kind == RuleKind.low_survey:
        survey = data.survey.lower()
        limit = p.nps_max if survey == "nps" else p.csat_max if survey == "csat" else None
        if limit is None or data.score > limit:
            return None
        evidence = Factor(
            code=f"low_{survey}",
            label=f"{survey.upper()} answer of {data.score}",
            contribution=1.0,
        )
        return Trigger(
            reason=rule.reason_code,
            severity=rule.severity,
            observed_at=data.answered_at,
            factors=(evidence,),
            rule_id=rule.id,
            kind=str(rule.kind),
        )
    return None


def needs_history(score: ScoreUpdated, rules: Iterable[Rule]) -> bool:
    """Whether any rule's verdict on this score could depend on the customer's earlier scores.

    Most scores need none: a jump of `delta` needs a current risk of at least `delta` (risks are never
    negative), and a move into decline needs the current stage to be decline with no previous stage
    carried by the event. Lets the caller skip reading the history; evaluate() gives the same triggers.
    """
    current = score.current
    stage_unknown = score.previous is None or score.previous.lifecycle_stage is None
    for rule in rules:
        p = rule.params
        jump_possible = p.delta is not None and p.within_days is not None and current.churn_risk >= p.delta - 1e-9
        if rule.kind == RuleKind.risk_jump and jump_possible:
            return True
        if rule.kind == RuleKind.lifecycle_decline and current.lifecycle_stage == DECLINE and stage_unknown:
            return True
    return False


def _still_across(score: ScoreUpdated, across: Callable[[ScoreValues], bool]) -> bool:
    """A lapse (the sweep's score) raises a threshold alert once, when it crosses: not again on every later
    pass while the silent customer stays across, whatever became of the first alert. A live event, a
    change of lens and an evaluation judge the level as it stands."""
    return is_lapse(score) and score.previous is not None and across(score.previous)


def _lowest_risk_before(score: ScoreUpdated, history: Sequence[ScorePoint], window: timedelta) -> float | None:
    """The lowest churn risk seen in the window before this score (the event's previous value included)."""
    at = as_utc(score.computed_at)
    risks = [p.churn_risk for p in history if at - window <= as_utc(p.at) < at]
    if score.previous is not None:
        risks.append(score.previous.churn_risk)
    return min(risks) if risks else None


def _previous_stage(score: ScoreUpdated, history: Sequence[ScorePoint]) -> str | None:
    if score.previous is not None and score.previous.lifecycle_stage is not None:
        return score.previous.lifecycle_stage
    at = as_utc(score.computed_at)
    earlier = [p for p in history if as_utc(p.at) < at]
    return max(earlier, key=lambda p: p.at).lifecycle_stage if earlier else None
