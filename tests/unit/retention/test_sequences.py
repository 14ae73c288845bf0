"""The sequence definition format and the pure step selection (services/retention/sequences/core.py)."""

from datetime import UTC, datetime, timedelta

import jsonschema_rs
import pytest
from pydantic import ValidationError

from services.retention.playbooks.core import Action, Step
from services.retention.sequences import core as sq

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

RECOVERY = sq.SequenceDef.model_validate(
    {
        "steps": [
            {"id": "call", "kind": "task", "action": "call_owner", "due_in_hours": 24},
            {"id": "wait_reply", "kind": "wait", "hours": 72},
            {"id": "replied", "kind": "branch", "when": {"replied": True}, "then": "done"},
            {"id": "offer", "kind": "touch", "action": "loyalty_offer", "template": "offer-10"},
            {"id": "done", "kind": "stop"},
        ],
        "stop_when": {"risk_below": 0.3, "purchased": True},
    }
)


def start() -> sq.State:
    return sq.State(cursor=0, started_at=NOW)


def test_first_advance_runs_up_to_the_wait() -> None:
    nxt = sq.advance(RECOVERY, start(), sq.Facts(churn_risk=0.8), NOW)
    assert [e.step.id for e in nxt.effects] == ["call"]
    assert nxt.due_at == NOW + timedelta(hours=72)
    assert nxt.state.cursor == 1 and nxt.state.waiting_since == NOW and nxt.finished is None


def test_a_wait_not_elapsed_does_nothing_and_keeps_its_timer() -> None:
    waiting = sq.advance(RECOVERY, start(), sq.Facts(), NOW).state
    early = sq.advance(RECOVERY, waiting, sq.Facts(), NOW + timedelta(hours=1))
    assert early.effects == () and early.due_at == NOW + timedelta(hours=72) and early.state == waiting


def test_no_reply_within_the_wait_sends_the_offer_then_stops() -> None:
    waiting = sq.advance(RECOVERY, start(), sq.Facts(), NOW).state
    later = sq.advance(RECOVERY, waiting, sq.Facts(replied=False), NOW + timedelta(hours=72))
    assert [e.step.id for e in later.effects] == ["offer"]
    assert later.finished == "stopped:step:done" and later.due_at is None
    assert later.trail == ("wait_reply", "replied", "offer", "done")


def test_a_reply_skips_the_offer() -> None:
    waiting = sq.advance(RECOVERY, start(), sq.Facts(), NOW).state
    later = sq.advance(RECOVERY, waiting, sq.Facts(replied=True), NOW + timedelta(hours=73))
    assert later.effects == () and later.finished == "stopped:step:done"


@pytest.mark.parametrize(
    ("facts", "why"),
    [
        (sq.Facts(purchased=True), "stopped:purchased"),
        (sq.Facts(churn_risk=0.2), "stopped:risk_below"),
        (sq.Facts(erased=True), "stopped:erased"),
    ],
)
def test_stop_conditions_end_the_sequence_before_any_step(facts: sq.Facts, why: str) -> None:
    nxt = sq.advance(RECOVERY, start(), facts, NOW)
    assert nxt.effects == () and nxt.finished == why and nxt.due_at is None


def test_branch_on_task_outcome_and_risk() -> None:
    definition = sq.SequenceDef.model_validate(
        {
            "steps": [
                {"id": "done_call", "kind": "branch", "when": {"task": "completed"}, "then": "survey"},
                {"id": "high", "kind": "branch", "when": {"risk_below": 0.5}, "then": "stop", "else": "escalate"},
                {"id": "escalate", "kind": "task", "action": "executive_outreach", "assignee": "role:key_account"},
                {"id": "survey", "kind": "touch", "action": "satisfaction_survey"},
            ],
            "stop_when": {"purchased": False},
        }
    )
    completed = sq.advance(definition, start(), sq.Facts(task="completed"), NOW)
    assert [e.step.id for e in completed.effects] == ["survey"] and completed.finished == "completed"
    low = sq.advance(definition, start(), sq.Facts(task="open", churn_risk=0.4), NOW)
    assert low.effects == () and low.finished == "stopped:branch:high"
    high = sq.advance(definition, start(), sq.Facts(task="open", churn_risk=0.9), NOW)
    assert [e.step.id for e in high.effects] == ["escalate", "survey"]


def test_classic_playbook_is_a_sequence_of_immediate_tasks() -> None:
    steps = [Step(Action.call_owner, 24), Step(Action.loyalty_offer, 72)]
    definition = sq.of_steps(steps)
    nxt = sq.advance(definition, start(), sq.Facts(purchased=True), NOW)
    assert [(e.step.action, getattr(e.step, "due_in_hours", None)) for e in nxt.effects] == [
        (Action.call_owner, 24),
        (Action.loyalty_offer, 72),
    ]
    assert nxt.finished == "completed"


def test_pick_by_tier_then_default() -> None:
    small = sq.SequenceDef(steps=[sq.TouchStep(id="offer", action=Action.win_back_offer)])
    key = sq.SequenceDef(steps=[sq.TaskStep(id="visit", action=Action.call_owner, assignee="role:key_account")])
    chosen = {"key": key, "default": small}
    assert sq.pick(chosen, "key") is key
    assert sq.pick(chosen, "small") is small and sq.pick(chosen, None) is small
    assert sq.pick({"key": key}, "small") is None


@pytest.mark.parametrize(
    ("steps", "fragment"),
    [
        ([{"id": "a", "kind": "wait", "hours": 0}], "hours"),
        ([{"id": "a", "kind": "touch", "action": "service_recovery"}], "contacts no one"),
        ([{"id": "a", "kind": "task", "action": "call_owner"}, {"id": "a", "kind": "stop"}], "used twice"),
        ([{"id": "a", "kind": "stop"}, {"id": "b", "kind": "branch", "when": {"replied": True}, "then": "a"}], "later"),
        ([{"id": "b", "kind": "branch", "when": {"replied": True}, "then": "nowhere"}], "no step"),
        ([{"id": "b", "kind": "branch", "when": {}, "then": "stop"}], "at least one"),
        ([{"id": "a", "kind": "teleport"}], "kind"),
        ([{"id": "a", "kind": "task", "action": "call_owner", "assignee": "anyone"}], "assignee"),
        ([{"id": "a", "kind": "touch", "action": "win_back_offer", "survey": "csat"}], "only a satisfaction_survey"),
        ([{"id": "a", "kind": "touch", "action": "satisfaction_survey", "survey": "ces"}], "survey"),
    ],
)
def test_bad_definitions_are_refused(steps: list[dict[str, object]], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        sq.SequenceDef.model_validate({"steps": steps})
    assert fragment in str(info.value)


def test_classic_steps_limited_to_tiers_are_left_out_for_other_tiers() -> None:
    steps = [Step(Action.call_owner, 24), Step(Action.executive_outreach, 48, frozenset({"platinum"}))]
    assert [s.id for s in sq.of_steps(steps, "lead").steps] == ["step_0"]
    assert [s.id for s in sq.of_steps(steps, "platinum").steps] == ["step_0", "step_1"]
    only_key = [Step(Action.executive_outreach, 48, frozenset({"platinum"}))]
    assert sq.advance(sq.of_steps(only_key, "lead"), start(), sq.Facts(), NOW).effects == ()


# Steps the published schema and validation must judge alike (the API fuzz draws from the schema); a branch's
# reference to a later step is the one rule the schema cannot state (tests/e2e/fuzz_hooks.py names it).
STEP_VERDICTS = [
    {"id": "a", "kind": "task", "action": "call_owner"},
    {"id": "a", "action": "call_owner"},
    {"id": "a", "kind": "touch", "action": "loyalty_offer"},
    {"id": "a", "kind": "touch", "action": "service_recovery"},
    {"id": "a", "kind": "wait", "hours": 2},
    {"id": "a", "kind": "branch", "when": {"purchased": True}, "then": "stop"},
    {"id": "a", "kind": "branch", "when": {}, "then": "stop"},
    {"id": "a", "kind": "branch", "when": {"purchased": None}, "then": "stop"},
    {"id": "a", "kind": "branch", "when": {"purchased": 0}, "then": "stop"},
    {"id": "a", "kind": "branch", "when": {"risk_below": False}, "then": "stop"},
    {"id": "a", "kind": "branch", "when": {"risk_below": 0}, "then": "stop"},
    {"id": "a", "kind": "stop"},
    {"id": "a"},
]


@pytest.mark.parametrize("step", STEP_VERDICTS)
def test_the_published_step_schema_accepts_exactly_what_validation_accepts(step):
    definition = {"steps": [step]}
    try:
        sq.SequenceDef.model_validate(definition)
        valid = True
    except ValidationError:
        valid = False
    assert jsonschema_rs.validator_for(sq.SequenceDef.model_json_schema()).is_valid(definition) == valid
