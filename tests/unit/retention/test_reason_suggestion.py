"""The suggested churn reason: votes per signal, the largest total wins, evidence and confidence."""

from datetime import UTC, datetime, timedelta

from services.retention.reports.reason_suggestion import SignalFact, recorded_reason, suggest

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def sig(n: int, kind: str, category: str | None = None) -> SignalFact:
    return SignalFact(event_id=f"e{n}", kind=kind, category=category, at=T0 + timedelta(days=n))


def test_no_signal_no_suggestion():
    result = suggest([])
    assert (result.reason, result.confidence, result.evidence) == (None, 0.0, [])


def test_complaint_categories_map_to_reasons():
    assert suggest([sig(1, "complaint", "product_quality")]).reason == "product_quality"
    assert suggest([sig(1, "complaint", "delivery")]).reason == "poor_service"
    assert suggest([sig(1, "complaint", "billing")]).reason == "price"
    assert suggest([sig(1, "complaint", None)]).reason == "poor_service"
    assert suggest([sig(1, "owner_change")]).reason == "staff_turnover"
    assert suggest([sig(1, "competitor_contact")]).reason == "competitor"


def test_the_largest_total_wins_with_its_share_as_confidence_and_its_voters_as_evidence():
    # price: billing complaint 2.0 + price contact 1.5 = 3.5; poor service: delivery complaint 2.0.
    signals = [sig(1, "complaint", "billing"), sig(2, "complaint", "delivery"), sig(3, "price_contact")]
    result = suggest(signals)
    assert result.reason == "price"
    assert result.confidence == 3.5 / 5.5
    assert result.votes == {"poor_service": 2.0, "price": 3.5}
    assert [e.event_id for e in result.evidence] == ["e3", "e1"]  # newest first


def test_a_tie_goes_to_the_reason_listed_first():
    # product quality 2.0 against staff turnover 2.0: product_quality is listed first.
    result = suggest([sig(1, "owner_change"), sig(2, "complaint", "product_quality")])
    assert (result.reason, result.confidence) == ("product_quality", 0.5)


def test_unknown_signal_kinds_do_not_vote():
    assert suggest([sig(1, "order"), sig(2, "survey", "nps")]).reason is None


def test_the_retired_code_reads_as_its_successor():
    assert recorded_reason("service_quality") == "poor_service"
    assert recorded_reason("price") == "price"
