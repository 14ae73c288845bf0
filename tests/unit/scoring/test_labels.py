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


def test_an_audience_trains_on_its_segment_and_attribute_values_only_and_counts_the_others_as_outside():
    def customer(cid: str, status: str, segment: str | None, **attributes) -> labels.Customer:
        churned_at = T0 if status == "churned" else None
        return labels.Customer(cid, status, churned_at, {"attr.plan": "p"}, segment=segment, attributes=attributes)

    customers = [
        customer("in-1", "active", "subscription", source="erp-2026", paperless=True),
        customer("in-2", "churned", "subscription", source="erp-2026", paperless=True),
        customer("in-won-back", "won_back", "subscription", source="erp-2026", paperless=True),
        customer("other-source", "active", "subscription", source="live", paperless=True),
        customer("other-segment", "active", "retail", source="erp-2026", paperless=True),
        customer("no-attribute", "active", "subscription", paperless=True),
        customer("paperless-one", "active", "subscription", source="erp-2026", paperless=1),
    ]
    audience = labels.Audience("subscription", {"source": "erp-2026", "paperless": True})
    out = labels.build(customers, [], cutoff=T0 + timedelta(days=30), audience=audience)
    assert out.ids == ["in-1", "in-2"]
    # True is not the number 1: a count of one is not a yes.
    assert out.report() == {
        "used": {"churned": 1, "active": 1},
        "from_history": 0,
        "from_profile": 2,
        "left_out": {labels.LEFT_OUT_STATUS: 1},
        "audience": {
            "segment": "subscription",
            "attributes": {"source": "erp-2026", "paperless": True},
            "customers_outside": 4,
        },
    }
    # Without an audience every customer counts and the report names none.
    assert "audience" not in labels.build(customers, [], cutoff=T0).report()


def test_rescorings_after_the_last_event_are_not_examples_so_both_classes_are_seen_at_an_event() -> None:
    customers = [
        labels.Customer("active", "active", None, {"attr.plan": "a"}),
        labels.Customer("churned", "churned", T0 + timedelta(days=20), {"attr.plan": "b"}),
    ]
    history = [
        labels.Snapshot("active", T0 + timedelta(days=5), snap(5), "interaction.recorded"),
        labels.Snapshot("churned", T0 + timedelta(days=6), snap(6), "interaction.recorded"),
        # An activation's rescoring and the sweep, as of a later data clock: only the active one is
        # before its label time, and its days since last contact would tell the classes apart.
        labels.Snapshot("active", T0 + timedelta(days=25), snap(50), "job.churn_train"),
        labels.Snapshot("active", T0 + timedelta(days=26), snap(51), "scoring.sweep"),
        labels.Snapshot("churned", T0 + timedelta(days=25), snap(60), "job.churn_train"),
    ]
    out = labels.build(customers, history, cutoff=T0 + timedelta(days=30))
    assert out.ids == ["active", "churned"]
    assert out.snapshots == [snap(5), snap(6)]
    assert (out.from_history, out.from_profile) == (2, 0)
