"""The segment filter language: what it accepts and how it names what it refuses."""

import jsonschema_rs
import pytest

from services.scoring.segments.segment_filter import Condition, FilterError, holds, json_schema, needs_rfm, parse


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


# Filters the published schema and the parser must judge alike (the API fuzz draws from the schema).
SAME_VERDICT = [
    [],
    [{"field": "clv", "op": "gt", "value": 100}],
    [{"field": "clv", "op": "in", "value": [1, 2.5]}],
    [{"field": "value_tier", "op": "ne", "value": "iron"}],
    [{"field": "lifecycle_stage", "op": "in", "value": ["decline"]}],
    [{"field": "segment", "op": "eq", "value": "smb"}],
    [{}],
    [{"field": "clv", "op": "gt", "value": 10**400}],
    [{"field": "clv", "op": "gt", "value": 1e16}],
    [{"field": "clv", "op": "gt", "value": True}],
    [{"field": "clv", "op": "in", "value": []}],
    [{"field": "value_tier", "op": "eq", "value": "bronze"}],
    [{"field": "value_tier", "op": "lt", "value": "gold"}],
    [{"field": "segment", "op": "eq", "value": ""}],
    [{"field": "segment", "op": "eq", "value": "x" * 101}],
    [{"field": "clv", "op": "gt", "value": 1, "extra": 0}],
    [{"field": "clv", "op": "gt"}],
    [{"field": "status", "op": {}, "value": "a"}],
    [{"field": "status", "op": "eq", "value": "active"}] * 21,
]


@pytest.mark.parametrize("filter_", SAME_VERDICT)
def test_the_published_schema_accepts_exactly_what_the_parser_accepts(filter_):
    def parses() -> bool:
        try:
            parse(filter_)
        except FilterError:
            return False
        return True

    assert jsonschema_rs.validator_for(json_schema()).is_valid(filter_) == parses()
