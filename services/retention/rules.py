"""Alert rules: which scores and complaints should raise a churn alert, and how severe it is.

Pure: no I/O, no clock. Rules are plain data (a RuleSet) so that stored, user-edited rules can later be
loaded into the same shapes (see service.load_rules) and previewed against past events with evaluate().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from servicekit.events.contracts.common import Severity
from servicekit.events.contracts.interaction import ComplaintOpened
from servicekit.events.contracts.scoring import Factor, ScoreUpdated, ScoreValues
from servicekit.events.envelope import EventData

if TYPE_CHECKING:
    from services.retention.settings import RetentionSettings


class Reason(StrEnum):
    """Reason codes of the built-in rules. Alerts store the code as a string, so rules may add codes."""

    high_churn_risk = "high_churn_risk"
    severe_complaint = "severe_complaint"


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
class Trigger:
    """One rule firing on one event: the alert it asks for and the evidence behind it."""

    reason: str
    severity: Severity
    observed_at: datetime  # when the evidence was true (the event's own time), for ordering
    factors: tuple[Factor, ...] = ()
    churn_risk: float | None = None
    value_at_risk: float | None = None


@dataclass(frozen=True, slots=True)
class ChurnRiskRule:
    """Churn risk at or above threshold raises an alert; at or above high_at it is high, else medium."""

    threshold: float
    high_at: float = 0.8
    reason: str = Reason.high_churn_risk

    def evaluate(self, score: ScoreUpdated) -> Trigger | None:
        risk = score.current.churn_risk
        if risk < self.threshold:
            return None
        return Trigger(
            reason=self.reason,
            severity=Severity.high if risk >= self.high_at else Severity.medium,
            observed_at=score.computed_at,
            factors=tuple(score.factors),
            churn_risk=risk,
            value_at_risk=value_at_risk(score.current),
        )


@dataclass(frozen=True, slots=True)
class ComplaintRule:
    """A complaint opened with one of these severities raises an alert of the complaint's severity."""

    severities: frozenset[Severity]
    reason: str = Reason.severe_complaint

    def evaluate(self, complaint: ComplaintOpened) -> Trigger | None:
        if complaint.severity not in self.severities:
            return None
        about = f" about {complaint.category}" if complaint.category else ""
        evidence = Factor(
            code=f"complaint_{complaint.severity}",
            label=f"{complaint.severity.capitalize()} complaint opened{about}",
            contribution=1.0,
        )
        return Trigger(
            reason=self.reason,
            severity=Severity(complaint.severity),
            observed_at=complaint.opened_at,
            factors=(evidence,),
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    churn_risk: tuple[ChurnRiskRule, ...] = ()
    complaints: tuple[ComplaintRule, ...] = field(default=())

    @classmethod
    def from_settings(cls, settings: RetentionSettings) -> RuleSet:
        """The built-in rules, tuned by RETENTION_* settings."""
        severe = frozenset(Severity(s) for s in settings.severe_complaint_severities)
        return cls(
            churn_risk=(ChurnRiskRule(threshold=settings.risk_threshold),),
            complaints=(ComplaintRule(severities=severe),),
        )


def evaluate(data: EventData, rules: RuleSet) -> list[Trigger]:
    """Every trigger the rules raise for one event (score.updated or complaint.opened; others raise none)."""
    fired: list[Trigger | None] = []
    if isinstance(data, ScoreUpdated):
        fired = [rule.evaluate(data) for rule in rules.churn_risk]
    elif isinstance(data, ComplaintOpened):
        fired = [rule.evaluate(data) for rule in rules.complaints]
    return [t for t in fired if t is not None]
