"""A rescoring that changes the lens, not the customer, raises an alert only where the customer's own
situation would have raised it live; a lapse alerts once, when it crosses; long-lapsed customers are
left to win-back. The pure rule (signals/history.py, rules/causes.py, rules/core.py) and the consumer."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts.common import Severity
from contracts.scoring import ScoreUpdated, ScoreValues
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.actions import resolve_alert
from services.retention.alerts.models import Outcome
from services.retention.catalog.service import params_of
from services.retention.defaults import DEFAULT_RULES
from services.retention.rules.causes import EVALUATION_CAUSE, SWEEP_CAUSE
from services.retention.rules.core import Context, Rule, RuleKind, evaluate
from services.retention.settings import get_settings
from services.retention.signals.history import Standing, standing
from tests.unit.retention.events import created, received
from tests.unit.retention.test_handlers import alerts, apply, scores

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
LONG_AGO = datetime(1998, 6, 30, tzinfo=UTC)
RULES = [
    Rule(RuleKind(r["kind"]), Severity(r["severity"]), reason=r["reason"], params=params_of(r["params"]), id=r["id"])
    for r in DEFAULT_RULES
]


def values(risk: float, *, stage: str | None = None, p_alive: float | None = None) -> ScoreValues:
    return ScoreValues(
        churn_risk=risk, health=100 * (1 - risk), value_tier="gold", lifecycle_stage=stage, p_alive=p_alive, clv=500.0
    )


def rescoring(
    cause: str | None,
    current: ScoreValues,
    *,
    previous: ScoreValues | None = None,
    last_event_at: datetime | None = None,
    previous_as_of: datetime | None = None,
    at: datetime = NOW,
    customer_id: str = "c-1",
    caused_by: str = "job:1",
) -> ScoreUpdated:
    return ScoreUpdated(
        customer_id=customer_id,
        previous=previous,
        current=current,
        model_version="churn-2",
        caused_by=caused_by,
        computed_at=at,
        as_of=at,
        cause=cause,
        last_event_at=last_event_at,
        previous_as_of=previous_as_of,
    )


def reasons(score: ScoreUpdated) -> set[str]:
    return {t.reason for t in evaluate(score, RULES, Context())}


def test_an_activation_leaves_a_customer_whose_last_purchase_was_in_1998_to_win_back():
    moved = rescoring(
        "job.churn_train", values(0.9, stage="decline"), previous=values(0.3, stage="formation"), last_event_at=LONG_AGO
    )
    # The rules alone would fire (the new lens says decline and high risk) ...
    assert reasons(moved) >= {"lifecycle_decline", "high_churn_risk", "risk_jump"}
    # ... but the customer's own situation is 28 years old: no alert, win-back's.
    assert standing(moved, now=NOW, horizon_days=30) == Standing.win_back
    refit = rescoring("job.value_refit", values(0.9, stage="decline"), last_event_at=NOW - timedelta(days=31))
    assert standing(refit, now=NOW, horizon_days=30) == Standing.win_back


def test_an_activation_judges_a_customer_with_a_recent_own_event_as_a_live_score_would():
    jumped = rescoring("job.churn_train", values(0.85), previous=values(0.4), last_event_at=NOW - timedelta(days=3))
    assert standing(jumped, now=NOW, horizon_days=30) == Standing.live
    assert reasons(jumped) == {"high_churn_risk", "risk_jump"}
    # Already above the threshold under the old lens: the level is judged as it stands, as before.
    still_high = rescoring("job.churn_train", values(0.7), previous=values(0.65), last_event_at=NOW - timedelta(days=3))
    assert reasons(still_high) == {"high_churn_risk"}


def test_the_sweep_raises_a_lapse_once_when_it_crosses_the_threshold():
    silent_since = NOW - timedelta(days=90)
    crossing = rescoring(
        SWEEP_CAUSE,
        values(0.62, p_alive=0.25),
        previous=values(0.55, p_alive=0.35),
        last_event_at=silent_since,
        previous_as_of=NOW - timedelta(days=2),
        caused_by="sweep:x",
    )
    assert standing(crossing, now=NOW, horizon_days=30) == Standing.live  # crossed since the last look
    assert reasons(crossing) == {"high_churn_risk", "key_customer_fading"}
    later = rescoring(
        SWEEP_CAUSE,
        values(0.7, p_alive=0.2),
        previous=values(0.62, p_alive=0.25),
        last_event_at=silent_since,
        previous_as_of=NOW,
        at=NOW + timedelta(days=3),
        caused_by="sweep:y",
    )
    assert standing(later, now=NOW + timedelta(days=3), horizon_days=30) == Standing.live
    assert reasons(later) == set()  # still across: not again, whatever became of the first alert


def test_a_sweep_years_after_the_lapse_raises_nothing():
    # The first sweep after a book of 1998 purchases was imported: the lapse happened decades ago.
    first = rescoring(
        SWEEP_CAUSE,
        values(0.95, stage="decline"),
        previous=values(0.3, stage="formation"),
        last_event_at=LONG_AGO,
        previous_as_of=LONG_AGO,
        caused_by="sweep:x",
    )
    assert standing(first, now=NOW, horizon_days=30) == Standing.win_back
    # A sweep years after a crossing that was alerted: the previous look is years old, and the customer
    # is still across every threshold, so neither the horizon nor the rules raise it again.
    years_later = rescoring(
        SWEEP_CAUSE,
        values(0.97, stage="decline"),
        previous=values(0.9, stage="decline"),
        last_event_at=NOW - timedelta(days=4 * 365),
        previous_as_of=NOW - timedelta(days=2 * 365),
        caused_by="sweep:y",
    )
    assert standing(years_later, now=NOW, horizon_days=30) == Standing.win_back
    assert reasons(years_later) == set()


def test_a_live_event_of_a_customer_already_across_the_threshold_raises_as_before():
    live = rescoring("interaction.recorded", values(0.75), previous=values(0.7), caused_by="evt-1")
    assert standing(live, now=NOW, horizon_days=30) == Standing.live
    assert reasons(live) == {"high_churn_risk"}
    old = rescoring("interaction.recorded", values(0.75), at=NOW - timedelta(days=31), caused_by="evt-2")
    assert standing(old, now=NOW, horizon_days=30) == Standing.history


def test_scores_of_earlier_producers_are_classified_by_their_lineage_and_judged_as_before_without_it():
    activation = rescoring(None, values(0.9), caused_by="job:abc")  # no cause, no last event: as before
    assert standing(activation, now=NOW, horizon_days=30) == Standing.live
    sweep = rescoring(None, values(0.9), previous=values(0.8), caused_by="sweep:2026-12-08")
    assert reasons(sweep) == set()  # a lapse by its lineage: no threshold alert while already across
    evaluation = rescoring(EVALUATION_CAUSE, values(0.9), last_event_at=LONG_AGO, caused_by="evaluation:c-1")
    assert standing(evaluation, now=NOW, horizon_days=30) == Standing.win_back
    assert standing(evaluation, now=NOW, horizon_days=0) == Standing.live  # no horizon: everything is live


# ---- through the consumer's handlers ----------------------------------------------------------------


@pytest.fixture
def horizon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_ALERT_HISTORY_HORIZON_DAYS", "30")
    get_settings.cache_clear()


async def test_an_activation_over_old_lapsers_and_recent_customers_alerts_only_the_recent(database: Database, horizon):
    now = datetime.now(UTC)
    lapsed = rescoring(
        "job.churn_train",
        values(0.9, stage="decline"),
        previous=values(0.3, stage="formation"),
        last_event_at=LONG_AGO,
        at=now,
        customer_id="old",
    )
    recent = rescoring(
        "job.churn_train",
        values(0.9, stage="stability"),
        previous=values(0.3, stage="stability"),
        last_event_at=now - timedelta(days=2),
        at=now,
        customer_id="new",
    )
    await apply(
        database, created("old"), created("new"), received(lapsed, "/crm/scoring"), received(recent, "/crm/scoring")
    )
    raised = await alerts(database)
    assert {(a.customer_id, a.reason) for a in raised} == {("new", "high_churn_risk"), ("new", "risk_jump")}
    # The lapser's score is kept (an open alert's risk, value at risk, the pyramid), with its own last event.
    kept = {s.customer_id: s for s in await scores(database)}
    assert kept["old"].churn_risk == 0.9 and kept["old"].last_event_at == LONG_AGO


async def test_a_sweep_crossing_alerts_once_and_not_again_after_the_alert_is_resolved(database: Database, horizon):
    now = datetime.now(UTC)
    silent_since = now - timedelta(days=90)

    def sweep(risk: float, before: float, days: int) -> ScoreUpdated:
        return rescoring(
            SWEEP_CAUSE,
            values(risk),
            previous=values(before),
            last_event_at=silent_since,
            previous_as_of=now + timedelta(days=days - 1),
            at=now + timedelta(days=days),
            caused_by=f"sweep:{days}",
        )

    await apply(database, created("c-1"), received(sweep(0.62, 0.55, 0), "/crm/scoring"))
    [alert] = await alerts(database)
    assert alert.reason == "high_churn_risk"
    async with database.transaction() as session:
        await resolve_alert(uow=UnitOfWork(session), alert_id=alert.id, outcome=Outcome.churned)
    await apply(database, received(sweep(0.7, 0.62, 1), "/crm/scoring"), received(sweep(0.8, 0.7, 2), "/crm/scoring"))
    assert [a.id for a in await alerts(database)] == [alert.id]
