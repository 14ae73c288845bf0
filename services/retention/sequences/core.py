"""Sequences: a playbook's steps with waits, conditions and branches, per value tier (docs/sequences.md).

Pure: the definition format (validated), and given a definition, an enrolment's state, the facts read
about the customer and `now`, what to do next (`advance`). No I/O, no clock. sequence_engine.py does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, model_validator
from pydantic.config import JsonDict

from services.retention.playbooks.core import Action, Step
from services.retention.touches.contact_policy import STEP_CHANNELS

# A walk through the steps never goes back (branches jump forward only), so one advance ends; this
# bounds the work one due timer does even so.
MAX_STEPS = 50
STEP_ID = r"^[a-z][a-z0-9_]{0,39}$"
TASK_OUTCOMES = ("completed", "open", "cancelled", "none")
DEFAULT_KEY = "default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _kind_required(schema: JsonDict) -> None:
    """The published schema says what validation needs: the steps are told apart by `kind`, so a step in a
    request names it (its default serves code that builds a step of a known kind)."""
    required = schema.get("required")
    schema["required"] = [*(required if isinstance(required, list) else []), "kind"]


class _Step(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_kind_required)


def _touch_schema(schema: JsonDict) -> None:
    _kind_required(schema)
    properties = schema.get("properties")
    if isinstance(properties, dict):  # only the actions that contact the customer on a channel
        properties["action"] = {"type": "string", "enum": [a.value for a in Action if STEP_CHANNELS.get(a.value)]}


class TaskStep(_Step):
    """A task for a person: the customer's account manager (`owner`) or a named role (`role:<name>`)."""

    id: str = Field(pattern=STEP_ID)
    kind: Literal["task"] = "task"
    action: Action
    due_in_hours: float = Field(default=24.0, gt=0, le=24 * 365)
    assignee: str = Field(default="owner", pattern=r"^(owner|role:[a-z][a-z0-9_-]{0,59})$")


class TouchStep(_Step):
    """An automated touch: an outbound event (and signed webhook) for the email, SMS or marketing system.
    It passes consent and the contact policy first; a blocked touch is recorded, then `on_blocked`."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_touch_schema)

    id: str = Field(pattern=STEP_ID)
    kind: Literal["touch"] = "touch"
    action: Action
    template: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9_.-]*$")
    on_blocked: Literal["continue", "stop"] = "continue"
    # A satisfaction_survey touch's question; none: the configured one (RETENTION_SURVEY_KIND).
    survey: Literal["nps", "csat"] | None = None

    @model_validator(mode="after")
    def _has_channel(self) -> TouchStep:
        if STEP_CHANNELS.get(self.action.value) is None:
            raise ValueError(f"action {self.action.value!r} contacts no one: use a task step")
        if self.survey is not None and self.action is not Action.satisfaction_survey:
            raise ValueError("survey: only a satisfaction_survey touch asks a survey question")
        return self


# Events that can end a wait early (``until``): an order (interaction.recorded of type purchase), a
# complaint opened, a survey answered, each arriving after the wait began.
WAIT_EVENTS = ("purchased", "complaint_opened", "survey_answered")
WaitEvent = Literal["purchased", "complaint_opened", "survey_answered"]


class WaitStep(_Step):
    """Wait `hours`; with `until`, the wait ends as soon as one of those events arrives, and the sequence
    goes on with the next step at once (a branch after it can tell which, e.g. on `purchased`)."""

    id: str = Field(pattern=STEP_ID)
    kind: Literal["wait"] = "wait"
    hours: float = Field(gt=0, le=24 * 365)
    until: tuple[WaitEvent, ...] = Field(default=(), max_length=len(WAIT_EVENTS))


CONDITION_PARTS = ("replied", "task", "risk_below", "purchased")


def _one_part_given(schema: JsonDict) -> None:
    schema["anyOf"] = [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in CONDITION_PARTS
    ]


class Condition(_Strict):
    """All given parts must hold. `replied`: the customer answered (a survey, a complaint) since the last
    wait began; `task`: the outcome of the sequence's latest task; `risk_below`: current churn risk;
    `purchased`: an order (interaction.recorded of type purchase) since enrolment."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_one_part_given)

    replied: StrictBool | None = None
    task: Literal["completed", "open", "cancelled", "none"] | None = None
    risk_below: StrictFloat | None = Field(default=None, ge=0, le=1)
    purchased: StrictBool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if self.replied is None and self.task is None and self.risk_below is None and self.purchased is None:
            raise ValueError("a condition needs at least one of replied, task, risk_below, purchased")
        return self


class BranchStep(_Step):
    """If the condition holds go to `then` (a later step's id, or `stop`), else to `else_` (default: next)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, json_schema_extra=_kind_required)

    id: str = Field(pattern=STEP_ID)
    kind: Literal["branch"] = "branch"
    when: Condition
    then: str = Field(pattern=STEP_ID)
    else_: str | None = Field(default=None, alias="else", pattern=STEP_ID)


class StopStep(_Step):
    id: str = Field(pattern=STEP_ID)
    kind: Literal["stop"] = "stop"


SequenceStep = Annotated[TaskStep | TouchStep | WaitStep | BranchStep | StopStep, Field(discriminator="kind")]


class StopWhen(_Strict):
    """Checked before every step: the sequence ends as soon as one holds."""

    risk_below: StrictFloat | None = Field(default=None, ge=0, le=1)
    purchased: StrictBool = True


class SequenceDef(_Strict):
    steps: list[SequenceStep] = Field(min_length=1, max_length=30)
    stop_when: StopWhen = StopWhen()

    @model_validator(mode="after")
    def _targets(self) -> SequenceDef:
        index = {}
        for i, step in enumerate(self.steps):
            if step.id in index:
                raise ValueError(f"steps[{i}].id: {step.id!r} is used twice")
            index[step.id] = i
        for i, step in enumerate(self.steps):
            if isinstance(step, BranchStep):
                for name, target in (("then", step.then), ("else", step.else_)):
                    if target is None or target == "stop":
                        continue
                    if target not in index:
                        raise ValueError(f"steps[{i}].{name}: no step {target!r}")
                    if index[target] <= i:
                        raise ValueError(f"steps[{i}].{name}: {target!r} is not a later step (branches go forward)")
        return self


class Sequences(_Strict):
    """A playbook's sequences: one per value tier, `default` for the others (or none: tasks as before)."""

    by_tier: dict[str, SequenceDef] = Field(default_factory=dict, max_length=10)


def of_steps(steps: tuple[Step, ...] | list[Step], tier: str | None = None) -> SequenceDef:
    """A classic playbook as a sequence for a customer of this tier: its task steps, all created at once
    (what plan_tasks plans), no waits, no stop conditions."""
    tasks: list[SequenceStep] = [
        TaskStep(id=f"step_{i}", action=s.action, due_in_hours=s.due_in_hours)
        for i, s in enumerate(steps)
        if not s.only_tiers or tier in s.only_tiers
    ]
    return SequenceDef(steps=tasks or [StopStep(id="nothing")], stop_when=StopWhen(purchased=False))


def pick(sequences: Mapping[str, SequenceDef], tier: str | None) -> SequenceDef | None:
    """The tier's sequence, else the default one, else None (the playbook's plain tasks apply)."""
    if tier is not None and tier in sequences:
        return sequences[tier]
    return sequences.get(DEFAULT_KEY)


# ---- state and the next action ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class State:
    cursor: int  # index of the next step to run
    started_at: datetime
    waiting_since: datetime | None = None  # set while cursor points at a wait that has begun
    wait_began: datetime | None = None  # when the latest wait began (for `replied`)


@dataclass(frozen=True, slots=True)
class Facts:
    """What retention knows about the customer now (score replica, signals, status changes, tasks)."""

    churn_risk: float | None = None
    purchased: bool = False  # since enrolment
    replied: bool = False  # since the latest wait began (or enrolment)
    task: str = "none"  # outcome of the sequence's latest task
    erased: bool = False  # the customer was erased: nothing more is done
    arrived: frozenset[str] = frozenset()  # WAIT_EVENTS that arrived since the latest wait began


@dataclass(frozen=True, slots=True)
class Effect:
    """A step to carry out now: a task or a touch."""

    step: TaskStep | TouchStep


@dataclass(frozen=True, slots=True)
class Next:
    """The result of advancing: effects to carry out, then either a timer (due_at) or the end."""

    effects: tuple[Effect, ...]
    state: State
    due_at: datetime | None  # None: finished
    finished: str | None = None  # completed, stopped:<why>
    trail: tuple[str, ...] = field(default=())  # ids of the steps passed, in order
    wake_on: tuple[str, ...] = ()  # the events that end the wait the enrolment now waits at
    ended_early: tuple[tuple[str, str], ...] = ()  # (wait step id, the event that ended it)


def holds(when: Condition, facts: Facts) -> bool:
    if when.replied is not None and facts.replied != when.replied:
        return False
    if when.task is not None and facts.task != when.task:
        return False
    if when.risk_below is not None and (facts.churn_risk is None or facts.churn_risk >= when.risk_below):
        return False
    return when.purchased is None or facts.purchased == when.purchased


def stop_reason(stop: StopWhen, facts: Facts) -> str | None:
    if facts.erased:
        return "erased"
    if stop.purchased and facts.purchased:
        return "purchased"
    if stop.risk_below is not None and facts.churn_risk is not None and facts.churn_risk < stop.risk_below:
        return "risk_below"
    return None


def advance(definition: SequenceDef, state: State, facts: Facts, now: datetime) -> Next:
    """Run from the cursor until a wait that has not elapsed, or the end.

    The facts are read before the walk, so a branch on `task` reads the outcome of a task created in an
    earlier walk: put a wait between a task and the branch on its outcome (docs/sequences.md).
    """
    why = stop_reason(definition.stop_when, facts)
    if why is not None:
        return Next(effects=(), state=state, due_at=None, finished=f"stopped:{why}")
    steps = definition.steps
    ids = {s.id: i for i, s in enumerate(steps)}
    cursor, waiting_since, wait_began = state.cursor, state.waiting_since, state.wait_began
    effects: list[Effect] = []
    trail: list[str] = []
    early: list[tuple[str, str]] = []
    for _ in range(MAX_STEPS):
        if cursor >= len(steps):
            return _end(effects, state, cursor, wait_began, trail, "completed", early)
        step = steps[cursor]
        if isinstance(step, WaitStep):
            # Only a wait that began before this walk can have seen its events (the facts were read
            # against that wait's start).
            ended_by = next((e for e in step.until if e in facts.arrived), None) if waiting_since else None
            if waiting_since is None:
                waiting_since = wait_began = now
            due = waiting_since + timedelta(hours=step.hours)
            if due > now and ended_by is None:
                new = State(cursor, state.started_at, waiting_since, wait_began)
                return Next(
                    effects=tuple(effects),
                    state=new,
                    due_at=due,
                    trail=tuple(trail),
                    wake_on=tuple(step.until),
                    ended_early=tuple(early),
                )
            if due > now and ended_by is not None:
                early.append((step.id, ended_by))
            trail.append(step.id)
            waiting_since = None
            cursor += 1
            continue
        trail.append(step.id)
        if isinstance(step, TaskStep | TouchStep):
            effects.append(Effect(step))
            cursor += 1
        elif isinstance(step, BranchStep):
            target = step.then if holds(step.when, facts) else step.else_
            if target == "stop":
                return _end(effects, state, cursor, wait_began, trail, f"stopped:branch:{step.id}", early)
            cursor = ids[target] if target is not None else cursor + 1
        else:  # StopStep
            return _end(effects, state, cursor, wait_began, trail, f"stopped:step:{step.id}", early)
    return _end(effects, state, cursor, wait_began, trail, "stopped:too_many_steps", early)


def _end(
    effects: list[Effect],
    state: State,
    cursor: int,
    wait_began: datetime | None,
    trail: list[str],
    why: str,
    early: list[tuple[str, str]],
) -> Next:
    new = State(cursor, state.started_at, None, wait_began)
    return Next(
        effects=tuple(effects), state=new, due_at=None, finished=why, trail=tuple(trail), ended_early=tuple(early)
    )
