"""Feature application: pure functions over FeatureState, with event times and no clock."""

from datetime import UTC, date, datetime, timedelta

import pytest

from services.scoring.scores import features as F
from services.scoring.scores.features import FeatureState

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def buy(state: FeatureState, id: str, days: float, amount: float = 100.0) -> bool:
    return F.record_interaction(state, interaction_id=id, type="purchase", occurred_at=at(days), amount=amount)


def complain(state: FeatureState, id: str, days: float = 0, severity: str = "medium") -> bool:
    return F.record_interaction(state, interaction_id=id, type="complaint", occurred_at=at(days), severity=severity)


def close(state: FeatureState, id: str, days: float = 1, status: str = "resolved") -> bool:
    return F.complaint_updated(state, complaint_id=id, status=status, severity="medium", changed_at=at(days))


def test_purchases_build_count_spend_first_last_and_the_customers_own_rhythm():
    state = FeatureState("c-1")
    for i, day in enumerate([0, 10, 30]):
        assert buy(state, f"p{i}", day, amount=50.0 * (i + 1))
    assert state.purchases == 3
    assert state.total_spend == 300.0
    assert (state.first_purchase_at, state.last_purchase_at) == (at(0), at(30))
    assert state.avg_purchase_gap_days == 15.0
    assert state.last_contact_at == at(30)


def test_a_late_purchase_does_not_move_last_purchase_or_the_clock_backwards():
    state = FeatureState("c-1")
    buy(state, "p1", 10)
    buy(state, "p0", 0)  # arrives late
    assert (state.first_purchase_at, state.last_purchase_at) == (at(0), at(10))
    assert state.as_of(at(5)) == at(10)
    assert state.as_of(at(20)) == at(20)


def test_the_same_interaction_sent_again_under_a_new_event_id_counts_once():
    state = FeatureState("c-1")
    assert buy(state, "p1", 0)
    assert not buy(state, "p1", 0)
    assert state.purchases == 1
    assert state.total_spend == 100.0


def test_a_recorded_complaint_counts_a_complaint_and_an_open_complaint():
    state = FeatureState("c-1")
    assert complain(state, "k1", severity="high")
    assert state.complaints_total == 1
    assert state.open_complaints == 1
    assert state.open_complaint_ids == {"k1": "high"}
    assert [(c.id, c.severity, c.severe) for c in state.recent_complaints] == [("k1", "high", True)]


@pytest.mark.parametrize("status", ["resolved", "closed", "rejected"])
def test_a_closing_status_decrements_open_complaints_once_even_when_repeated(status):
    state = FeatureState("c-1")
    complain(state, "k1")
    complain(state, "k2")
    assert close(state, "k1", status=status)
    assert state.open_complaints == 1
    assert not close(state, "k1", status=status)  # the duplicate close
    assert not close(state, "k1", status="resolved")
    assert state.open_complaints == 1
    assert state.complaints_total == 2  # closing does not un-count the complaint


def test_a_close_that_overtakes_its_complaint_leaves_it_closed():
    state = FeatureState("c-1")
    close(state, "k1", days=0)
    complain(state, "k1", days=0)
    assert state.complaints_total == 1
    assert state.open_complaints == 0


def test_a_non_closing_status_after_a_close_reopens_the_complaint_and_regrades_it():
    state = FeatureState("c-1")
    complain(state, "k1", severity="low")
    close(state, "k1")
    assert F.complaint_updated(state, complaint_id="k1", status="acknowledged", severity="critical", changed_at=at(2))
    assert state.open_complaint_ids == {"k1": "critical"}
    assert state.recent_complaints[0].severity == "critical"
    # The same status again changes nothing.
    assert not F.complaint_updated(
        state, complaint_id="k1", status="acknowledged", severity="critical", changed_at=at(3)
    )


def test_overdue_marks_a_complaint_overdue_once_and_closing_clears_it():
    state = FeatureState("c-1")
    complain(state, "k1")
    assert F.complaint_overdue(state, complaint_id="k1", severity="medium", at=at(2))
    assert not F.complaint_overdue(state, complaint_id="k1", severity="medium", at=at(3))
    assert (state.open_complaints, state.overdue_complaints) == (1, 1)
    close(state, "k1", days=4)
    assert (state.open_complaints, state.overdue_complaints) == (0, 0)
    assert not F.complaint_overdue(state, complaint_id="k1", severity="medium", at=at(5))


def test_surveys_keep_last_count_and_sum_per_scale_and_last_is_by_answer_time():
    state = FeatureState("c-1")
    assert F.survey_answered(state, interaction_id="s1", survey="nps", score=9, answered_at=at(5))
    assert F.survey_answered(state, interaction_id="s2", survey="nps", score=3, answered_at=at(1))  # older, late
    assert F.survey_answered(state, interaction_id="s3", survey="csat", score=2, answered_at=at(2))
    assert (state.last_nps, state.nps_count, state.nps_sum, state.avg_nps) == (9, 2, 12, 6.0)
    assert (state.last_csat, state.csat_count, state.csat_sum) == (2, 1, 2)
    assert not F.survey_answered(state, interaction_id="s1", survey="nps", score=9, answered_at=at(5))
    assert state.nps_count == 2


@pytest.mark.parametrize(("survey", "score"), [("nps", 11), ("nps", -1), ("csat", 0), ("csat", 6)])
def test_a_survey_score_outside_its_scale_is_rejected(survey, score):
    with pytest.raises(ValueError):
        F.survey_answered(FeatureState("c-1"), interaction_id="s", survey=survey, score=score, answered_at=T0)


def test_survey_interactions_are_ignored_because_survey_answered_carries_them():
    state = FeatureState("c-1")
    assert not F.record_interaction(state, interaction_id="i1", type="survey", occurred_at=T0)
    assert state.last_contact_at is None


def test_other_contact_types_only_move_last_contact_and_returns_are_counted():
    state = FeatureState("c-1")
    assert F.record_interaction(state, interaction_id="i1", type="call", occurred_at=at(3))
    assert F.record_interaction(state, interaction_id="i2", type="email", occurred_at=at(1))
    assert F.record_interaction(state, interaction_id="i3", type="return", occurred_at=at(2))
    assert state.last_contact_at == at(3)
    assert (state.purchases, state.complaints_total, state.returns, state.last_return_at) == (0, 0, 1, at(2))


def test_sentiment_is_an_ewma_of_the_clamped_contact_sentiment():
    state = FeatureState("c-1")
    F.record_interaction(state, interaction_id="i1", type="chat", occurred_at=at(0), sentiment=0.5)
    F.record_interaction(state, interaction_id="i2", type="chat", occurred_at=at(1), sentiment=-3.0)  # clamped to -1
    assert state.sentiment_ewma == pytest.approx(0.3 * -1.0 + 0.7 * 0.5)
    assert state.sentiment_count == 2


def test_complaints_older_than_90_days_leave_the_window_but_stay_in_the_total():
    state = FeatureState("c-1")
    complain(state, "k1", days=0)
    complain(state, "k2", days=50)
    F.record_interaction(state, interaction_id="i1", type="call", occurred_at=at(100))
    assert [c.id for c in state.recent_complaints] == ["k2"]
    assert state.complaints_total == 2
    assert [c.id for c in F.complaints_between(state, at(100), 90)] == ["k2"]
    assert F.complaints_between(state, at(100), 30) == []


def test_state_survives_its_storage_form_unchanged():
    state = FeatureState("c-1", segment="smb", attributes={"plan": "pro"})
    buy(state, "p1", 0, 42.5)
    complain(state, "k1", 1, "critical")
    F.complaint_overdue(state, complaint_id="k1", severity="critical", at=at(3))
    complain(state, "k2", 2)
    close(state, "k2", days=3)
    F.survey_answered(state, interaction_id="s1", survey="csat", score=4, answered_at=at(4))
    stored = F.dump_state(state)
    assert (stored["open_complaints"], stored["overdue_complaints"]) == (1, 1)
    # Naive datetimes, as SQLite returns them, come back as UTC.
    stored["last_contact_at"] = stored["last_contact_at"].replace(tzinfo=None)
    assert F.load_state(stored) == state


def test_customer_events_set_classification_and_ignore_an_older_version():
    state = FeatureState("c-1")
    assert F.customer_upserted(
        state,
        status="active",
        segment="smb",
        attributes={"plan": "pro"},
        version=1,
        fields_changed=frozenset({"segment", "attributes"}),
    )
    assert F.customer_upserted(
        state, segment="enterprise", attributes={}, version=3, fields_changed=frozenset({"segment"})
    )
    assert not F.customer_upserted(state, segment="smb", version=2, fields_changed=frozenset({"segment"}))
    assert (state.status, state.segment, state.attributes) == ("active", "enterprise", {"plan": "pro"})
    assert F.customer_status_changed(state, status="churned")
    assert not F.customer_status_changed(state, status="churned")


def test_the_churn_date_is_the_start_of_the_recorded_churn_day_else_the_time_of_the_change():
    assert F.churn_moment(date(2026, 9, 14), at(30)) == datetime(2026, 9, 14, tzinfo=UTC)
    assert F.churn_moment(None, at(30)) == at(30)
    assert F.churn_moment(None) is None


def test_a_customer_imported_as_churned_keeps_its_churn_date():
    state = FeatureState("c-1")
    churned = F.churn_moment(date(2026, 9, 14))
    assert F.customer_upserted(state, status="churned", version=1, churned_at=churned)
    assert (state.status, state.churned_at) == ("churned", datetime(2026, 9, 14, tzinfo=UTC))


def test_a_late_reported_churn_is_dated_by_the_churn_day_not_by_the_report():
    state = FeatureState("c-1", status="active")
    churned = F.churn_moment(date(2026, 9, 14), at(30))
    assert F.customer_status_changed(state, status="churned", changed_at=at(30), churned_at=churned)
    assert state.churned_at == datetime(2026, 9, 14, tzinfo=UTC)


def test_erasure_forgets_everything_and_later_events_are_ignored():
    state = FeatureState("c-1", segment="smb")
    buy(state, "p1", 0)
    assert F.customer_erased(state)
    assert state == FeatureState("c-1", erased=True)
    assert not buy(state, "p2", 1)
    assert not complain(state, "k1", 1)
    assert not F.survey_answered(state, interaction_id="s", survey="nps", score=1, answered_at=T0)
    assert state.purchases == 0
