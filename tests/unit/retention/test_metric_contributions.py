"""Every customer's contribution rows, counted for any period, give the same metrics as the per-customer
tally (outcomes/core.py): the decomposition the monthly totals rest on."""

import random
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from services.retention.outcomes import contributions as shares
from services.retention.outcomes import core as outcomes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LOOKBACK = timedelta(days=45)


def _random_customers(rng: random.Random, n: int) -> tuple[list[outcomes.CustomerFact], list[outcomes.AlertFact]]:
    def at() -> datetime:  # a coarse grid, so ties and changes at a period's very start happen
        return T0 + timedelta(days=7 * rng.randint(-10, 30), hours=rng.choice((0, 0, 12)))

    facts, alerts = [], []
    for i in range(n):
        cid = f"c{i}"
        changes = tuple(
            (at(), rng.choice((outcomes.CHURNED, outcomes.CHURNED, "active", "dormant", "won_back")))
            for _ in range(rng.choice((0, 1, 2, 3, 4)))
        )
        facts.append(
            outcomes.CustomerFact(
                cid,
                tier=rng.choice(("gold", None)),
                segment=rng.choice(("smb", "")),
                first_seen=rng.choice((None, at(), at())),
                status_changes=changes,
            )
        )
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            alerts.append(
                outcomes.AlertFact(
                    cid,
                    rng.choice(("complaint", "risk")),
                    at(),
                    rng.choice((None, "rule-a")),
                    rng.choice((None, outcomes.SAVED, outcomes.CHURNED, "false_alarm")),
                    rng.random() < 0.3,
                )
            )
    return facts, alerts


def _counted(
    facts: list[outcomes.CustomerFact], alerts: list[outcomes.AlertFact], start: datetime, end: datetime
) -> dict[str | None, tuple[Counter[str], list[float]]]:
    """Per rule (key None: the rows of no rule): the period's count of rows per measure, and warnings."""
    result: dict[str | None, tuple[Counter[str], list[float]]] = {}
    for fact in facts:
        mine = [a for a in alerts if a.customer_id == fact.customer_id]
        for row in shares.contributions(fact, mine, LOOKBACK):
            if shares.counts(row, start, end):
                counted, warnings = result.setdefault(row.rule, (Counter(), []))
                counted[row.measure] += 1
                if row.measure == shares.WARNED:
                    warnings.append(shares.warning_days(row.value))
    return result


PERIODS = [
    (T0, T0 + timedelta(days=31)),  # a month
    (T0 + timedelta(days=3, hours=5), T0 + timedelta(days=40)),  # partial months
    (T0 - timedelta(days=70), T0 + timedelta(days=210)),  # the whole data
    (T0 + timedelta(days=300), T0 + timedelta(days=400)),  # after the data
    (T0 + timedelta(days=7), T0 + timedelta(days=7, hours=12)),  # half a day, on the grid
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("start", "end"), PERIODS)
def test_counting_contribution_rows_gives_the_per_customer_metrics(seed: int, start: datetime, end: datetime) -> None:
    facts, alerts = _random_customers(random.Random(seed), 60)

    counted, warnings = _counted(facts, alerts, start, end).get(None, (Counter(), []))

    expected = outcomes.compute(facts, alerts, start=start, end=end, lookback=LOOKBACK)
    assert asdict(shares.metrics_of(counted, warnings, start, end)) == asdict(expected)
    if (start, end) == PERIODS[2]:  # the whole data exercises every number
        assert expected.churned > 3 and expected.saved_customers > 0 and expected.churned_with_warning > 1
        assert expected.control.alerts > 0 and expected.treated.churned > 0 and expected.positive_customers > 0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("start", "end"), PERIODS[:3])
def test_a_rules_rows_give_that_rules_metrics(seed: int, start: datetime, end: datetime) -> None:
    facts, alerts = _random_customers(random.Random(100 + seed), 60)
    overall, _ = _counted(facts, alerts, start, end).get(None, (Counter(), []))
    per_rule = _counted(facts, alerts, start, end)

    expected = outcomes.grouped(facts, alerts, group_by="rule", start=start, end=end, lookback=LOOKBACK)
    for metrics in expected:
        counted, warnings = per_rule.get(metrics.key, (Counter(), []))
        counted = counted + Counter({m: overall[m] for m in shares.CUSTOMER_MEASURES})
        assert asdict(shares.metrics_of(counted, warnings, start, end, metrics.key)) == asdict(metrics)
