"""The segment filter language: what it accepts and how it names what it refuses."""

import pytest

from services.scoring.segments.segment_filter import Condition, FilterError, holds, needs_rfm, parse


def test_a_valid_filter_parses_into_conditions():
    conditions = parse(
        [
            {"field": "value_tier", "op": "in", "value": ["platinum", "gold"]},
            {"field": "churn_risk", "op": "gte", "value": 0.5},
            {"field": "rfm_segment", "op": "eq", "value": "at_risk"},
        ]
    )
    assert conditions == (
        Condition("value_tier", "in", ("platinum", "gold")),
        Condition("churn_risk", "gte", 0.5),
        Condition("rfm_segment", "eq", "at_risk"),
    )
    assert needs_rfm(conditions) and not needs_rfm(conditions[:2])


@pytest.mark.parametrize(
    ("filter_", "location"),
    [
        ({"field": "x"}, "filter"),
        ([{"field": "email", "op": "eq", "value": "a"}], "filter[0].field"),
        ([{"field": "churn_risk", "op": "like", "value": 1}], "filter[0].op"),
        ([{"field": "segment", "op": "gt", "value": "a"}], "filter[0].op"),
        ([{"field": "churn_risk", "op": "eq"}], "filter[0].value"),
        ([{"field": "churn_risk", "op": "eq", "value": "high"}], "filter[0].value"),
        ([{"field": "churn_risk", "op": "eq", "value": True}], "filter[0].value"),
        ([{"field": "value_tier", "op": "eq", "value": "diamond"}], "filter[0].value"),
        ([{"field": "value_tier", "op": "in", "value": []}], "filter[0].value"),
        ([{"field": "value_tier", "op": "in", "value": ["gold", 3]}], "filter[0].value[1]"),
        ([{"field": "health", "op": "eq", "value": 1, "sql": "1=1"}], "filter[0].sql"),
        ([1], "filter[0]"),
    ],
)
def test_mistakes_name_the_part(filter_, location):
    with pytest.raises(FilterError) as info:
        parse(filter_)
    assert info.value.location == location


def test_holds_matches_the_sql_meaning():
    assert holds(Condition("clv", "gte", 10.0), 10.0)
    assert not holds(Condition("clv", "gte", 10.0), None)
    assert holds(Condition("value_tier", "in", ("gold",)), "gold")
    assert holds(Condition("segment", "ne", "A"), "B")
