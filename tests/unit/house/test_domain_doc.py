"""docs/domain.md's tables are what tools.domain_doc generates from the code now."""

from __future__ import annotations

import pytest

from tools import domain_doc


def test_the_domain_reference_is_current() -> None:
    committed = domain_doc.DOC.read_text(encoding="utf-8")
    assert domain_doc.render(committed) == committed, "docs/domain.md is behind the code: run make docs"


def test_a_code_without_a_meaning_stops_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    reasons = dict(domain_doc.REASON)
    del reasons["competitor"]
    monkeypatch.setattr(domain_doc, "REASON", reasons)
    with pytest.raises(SystemExit, match="competitor"):
        domain_doc.render(domain_doc.DOC.read_text(encoding="utf-8"))


def test_a_meaning_without_a_code_stops_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(domain_doc, "METRIC", {**domain_doc.METRIC, "net_promoter_score": "gone"})
    with pytest.raises(SystemExit, match="net_promoter_score"):
        domain_doc.render(domain_doc.DOC.read_text(encoding="utf-8"))


def test_a_missing_block_stops_the_generation() -> None:
    with pytest.raises(SystemExit, match="generated blocks"):
        domain_doc.render("# Domain reference\n")


def test_every_report_route_of_the_api_is_listed() -> None:
    table = domain_doc.reports(domain_doc._api())
    assert "`GET /reports/customers/churn`" in table
    assert "`GET /retention/metrics`" in table
    assert "`GET /reports/value/pyramid`" in table
