from datetime import timedelta

from services.retention.playbooks.core import Action, Step, draw, in_control_group, plan_tasks
from tests.unit.retention.events import T0

STEPS = [
    Step(Action.service_recovery, 24),
    Step(Action.call_owner, 24),
    Step(Action.executive_outreach, 48, frozenset({"platinum"})),
]


def test_tasks_are_due_the_steps_hours_after_now():
    planned = plan_tasks(STEPS, tier="gold", now=T0)
    assert [(p.action, p.due_at) for p in planned] == [
        (Action.service_recovery, T0 + timedelta(hours=24)),
        (Action.call_owner, T0 + timedelta(hours=24)),
    ]


def test_a_step_limited_to_tiers_is_planned_only_for_those_tiers():
    assert Action.executive_outreach in [p.action for p in plan_tasks(STEPS, tier="platinum", now=T0)]
    assert Action.executive_outreach not in [p.action for p in plan_tasks(STEPS, tier=None, now=T0)]


def test_the_control_draw_is_fixed_by_the_alert_id():
    assert draw("alert-1") == draw("alert-1")
    assert draw("alert-1") != draw("alert-2")
    assert 0 <= draw("alert-1") < 1


def test_the_control_group_holds_back_about_the_configured_share():
    ids = [f"alert-{i}" for i in range(10_000)]
    share = sum(in_control_group(i, 0.2) for i in ids) / len(ids)
    assert 0.18 < share < 0.22
    assert not any(in_control_group(i, 0.0) for i in ids[:500])
    assert all(in_control_group(i, 1.0) for i in ids[:500])
