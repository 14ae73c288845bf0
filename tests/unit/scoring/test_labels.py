"""services.scoring.training.labels: who is a training example, from what, and who is left out and why."""

from datetime import UTC, datetime, timedelta

from services.scoring.training import labels

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def snap(value: int) -> dict:
    return {"purchases": value}


def test_history_before_the_label_time_wins_and_profiles_cover_customers_without_it():
    customers = [
        labels.Customer("churned-with-history", "churned", T0 + timedelta(days=10), {"attr.plan": "a"}),
        labels.Customer("churned-only-later-history", "churned", T0, {"attr.plan": "b"}),
        labels.Customer("active-profile", "active", None, {"attr.plan": "c"}),
        labels.Customer("won-back", "won_back", T0, {"attr.plan": "d"}),
        labels.Customer("churned-no-date", "churned", None, {"attr.plan": "e"}),
    ]
    history = [
        labels.Snapshot("churned-with-history", T0 + timedelta(days=5), snap(2), "interaction.recorded"),
        labels.Snapshot("churned-with-history", T0 + timedelta(days=10), snap(3), "interaction.recorded"),
        # A profile rescoring after the others must not hide the history.
        labels.Snapshot("churned-with-history", T0 + timedelta(days=1), snap(0), "customer.created"),
        labels.Snapshot("churned-only-later-history", T0 + timedelta(days=3), snap(9), "interaction.recorded"),
        labels.Snapshot("active-profile", T0 + timedelta(days=400), snap(0), "customer.created"),
    ]
    out = labels.build(customers, history, cutoff=T0 + timedelta(days=30))
    assert out.ids == ["active-profile", "churned-only-later-history", "churned-with-history"]
    assert out.labels == [0, 1, 1]
    assert out.snapshots == [{"attr.plan": "c"}, {"attr.plan": "b"}, snap(2)]
    assert (out.from_history, out.from_profile) == (1, 2)
    assert out.report() == {
        "used": {"churned": 2, "active": 1},
        "from_history": 1,
        "from_profile": 2,
        "left_out": {labels.LEFT_OUT_NO_DATE: 1, labels.LEFT_OUT_STATUS: 1},
    }


def test_a_customer_without_history_or_profile_is_left_out_and_counted():
    out = labels.build([labels.Customer("x", "active", None, None)], [], cutoff=T0)
    assert out.ids == [] and out.report()["left_out"] == {labels.LEFT_OUT_NO_PROFILE: 1}
