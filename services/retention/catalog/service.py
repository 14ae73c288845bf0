"""The rules, playbooks and webhooks a transaction acts on: kept per process, checked once per transaction.

Every consumer batch needs all three; they change seldom, through the API or by hand. Triggers on their
tables give `catalog_version.token` a new random value on any change, so one read of that token per
transaction tells whether this process's copy is current. Random, not a counter: a counter bumped inside
a transaction that then rolled back would be handed out again by the next change, and a copy read inside
the rolled-back transaction would pass for current.

The copy holds plain frozen values, never ORM objects, because it outlives the session that read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.common import Severity
from servicekit.unit_of_work import UnitOfWork
from services.retention.catalog.models import CatalogVersion
from services.retention.playbooks.core import Action, Step
from services.retention.playbooks.models import Playbook
from services.retention.rules.core import Rule, RuleKind, RuleParams
from services.retention.rules.models import AlertRule, RuleParamsBody
from services.retention.sequences.core import SequenceDef
from services.retention.webhooks.models import Webhook


@dataclass(frozen=True, slots=True)
class Subscriber:
    """An active webhook, as the publisher needs it."""

    id: str
    event_types: frozenset[str]  # empty: every retention event

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True, slots=True)
class ActivePlaybook:
    """An enabled playbook, as alerting and task planning need it."""

    reason: str
    control_share: float
    steps: tuple[Step, ...]
    sequences: Mapping[str, SequenceDef] = field(default_factory=dict)  # tier or "default" -> sequence


@dataclass(frozen=True, slots=True)
class Catalog:
    token: str
    rules: tuple[Rule, ...]  # the enabled rules
    playbooks: Mapping[str, ActivePlaybook]  # reason -> its enabled playbook
    subscribers: tuple[Subscriber, ...]


_current: Catalog | None = None  # this process's copy


@dataclass
class CatalogInTransaction:
    """The catalog this transaction has checked against the token (None: not checked yet)."""

    found: Catalog | None = None


async def catalog(uow: UnitOfWork) -> Catalog:
    """The catalog as this transaction sees it; reads the three tables only when their token has changed."""
    state = uow.state(CatalogInTransaction)
    if state.found is None:
        # Token first, then the tables: a copy is never older than the token it is filed under.
        return await checked(uow, (await uow.session.execute(select(CatalogVersion.token))).scalar_one())
    return state.found


async def checked(uow: UnitOfWork, token: str) -> Catalog:
    """The catalog as this transaction sees it, given the token this transaction has just read (with other rows,
    in one statement); reads the three tables only when the token has changed."""
    global _current
    state = uow.state(CatalogInTransaction)
    if state.found is None:
        if _current is None or _current.token != token:
            _current = await _read(uow.session, token)
        state.found = _current
    return state.found


def last_read() -> Catalog | None:
    """This process's copy as last read, unchecked (what a preload may guess with before its token is read)."""
    return _current


def changed(uow: UnitOfWork) -> None:
    """Call after flushing a change to the three tables: the transaction's next read sees the new token."""
    uow.forget(CatalogInTransaction)


async def _read(session: AsyncSession, token: str) -> Catalog:
    rules = (await session.execute(select(AlertRule).where(AlertRule.enabled.is_(True)))).scalars().all()
    playbooks = (await session.execute(select(Playbook).where(Playbook.enabled.is_(True)))).scalars().all()
    hooks = (await session.execute(select(Webhook).where(Webhook.active.is_(True)))).scalars().all()
    return Catalog(
        token=token,
        rules=tuple(rule_of(r) for r in rules),
        playbooks={p.reason: playbook_of(p) for p in playbooks},
        subscribers=tuple(Subscriber(id=h.id, event_types=frozenset(h.event_types)) for h in hooks),
    )


def rule_of(row: AlertRule) -> Rule:
    return Rule(
        id=row.id,
        name=row.name,
        kind=RuleKind(row.kind),
        reason=row.reason,
        severity=Severity(row.severity),
        params=params_of(row.params),
    )


def params_of(stored: dict[str, Any]) -> RuleParams:
    body = RuleParamsBody.model_validate(stored)
    return RuleParams(
        threshold=body.threshold,
        high_at=body.high_at,
        delta=body.delta,
        within_days=body.within_days,
        tiers=frozenset(body.tiers),
        severities=frozenset(body.severities),
        nps_max=body.nps_max,
        csat_max=body.csat_max,
    )


def playbook_of(row: Playbook) -> ActivePlaybook:
    steps = tuple(
        Step(
            action=Action(s["action"]),
            due_in_hours=float(s["due_in_hours"]),
            only_tiers=frozenset(s.get("only_tiers") or ()),
        )
        for s in row.steps
    )
    sequences = {key: SequenceDef.model_validate(value) for key, value in (row.sequences or {}).items()}
    return ActivePlaybook(reason=row.reason, control_share=row.control_share, steps=steps, sequences=sequences)
