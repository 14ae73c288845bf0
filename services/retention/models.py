"""Retention tables and API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, HttpUrl, WithJsonSchema
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Boolean, Column, Index, MetaData, String, Text, UniqueConstraint, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.clock import utc_now
from servicekit.events.contracts.common import Severity
from servicekit.tables import BigIntId, add_plumbing_tables
from servicekit.types import UtcDateTime, as_utc
from services.retention.playbooks import Action
from services.retention.rules import TIERS, RuleKind
from services.retention.sequences import DEFAULT_KEY, SequenceDef


class RetentionTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = RetentionTable.metadata
add_plumbing_tables(metadata)


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    snoozed = "snoozed"
    resolved = "resolved"


class Outcome(StrEnum):
    saved = "saved"
    churned = "churned"
    false_alarm = "false_alarm"


class TaskStatus(StrEnum):
    open = "open"
    completed = "completed"
    cancelled = "cancelled"  # its alert closed as churned: the win-back playbook takes over


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"  # gave up after the maximum number of attempts


# Which statuses each action may start from; resolved is terminal (a new trigger opens a new alert).
ACKNOWLEDGE_FROM = frozenset({AlertStatus.open, AlertStatus.snoozed})
SNOOZE_FROM = frozenset({AlertStatus.open, AlertStatus.acknowledged, AlertStatus.snoozed})
RESOLVE_FROM = frozenset({AlertStatus.open, AlertStatus.acknowledged, AlertStatus.snoozed})

# Lineage kept per alert: enough to explain it and to drop redelivered events, bounded in size.
EVENT_IDS_KEPT = 50


def new_id() -> str:
    return str(uuid.uuid4())


def open_slot(customer_id: str, reason: str) -> str:
    """The value whose uniqueness allows one unresolved alert per customer and reason."""
    return f"{customer_id}:{reason}"


def _at(*, nullable: bool = False, index: bool = False) -> Any:
    column = Column(UtcDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utc_now, sa_column=column)


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


def _flag(default: bool) -> Any:
    return Field(default=default, sa_column=Column(Boolean, nullable=False, default=default))


class Alert(RetentionTable, table=True):
    __tablename__ = "alerts"
    # NULLs never collide in a UNIQUE constraint (PostgreSQL and SQLite alike), so resolved alerts,
    # whose open_slot is NULL, pile up freely while at most one unresolved alert holds each slot.
    __table_args__ = (UniqueConstraint("open_slot", name="uq_alerts_open_slot"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100, index=True)
    reason: str = Field(max_length=64, index=True)
    rule_id: str | None = Field(default=None, max_length=64)
    severity: Severity = Field(sa_type=String(20), index=True)
    status: AlertStatus = Field(default=AlertStatus.open, sa_type=String(20), index=True)
    trigger_count: int = 1
    first_triggered_at: datetime = _at()
    last_triggered_at: datetime = _at()
    churn_risk: float | None = None
    # Time of the score churn_risk and value_at_risk come from; an older score never overwrites them.
    risk_as_of: datetime | None = _at(nullable=True)
    value_at_risk: float | None = None
    owner: str | None = Field(default=None, max_length=100, index=True)
    tier: str | None = Field(default=None, max_length=20, index=True)
    segment: str | None = Field(default=None, max_length=100)
    # Held back by the playbook's control share: no tasks, so the playbook's effect can be measured.
    control: bool = _flag(False)
    factors: list[dict[str, Any]] = _json(list)
    event_ids: list[str] = _json(list)
    acknowledged_at: datetime | None = _at(nullable=True)
    snoozed_until: datetime | None = _at(nullable=True, index=True)
    snooze_reason: str | None = Field(default=None, max_length=500)
    # Auto-save: below this churn risk since risk_below_since for long enough, the alert closes as saved.
    recover_below: float | None = None
    risk_below_since: datetime | None = _at(nullable=True)
    outcome: Outcome | None = Field(default=None, sa_type=String(20))
    outcome_note: str | None = Field(default=None, max_length=2000)
    resolved_at: datetime | None = _at(nullable=True)
    open_slot: str | None = Field(default=None, max_length=200)
    created_at: datetime = _at()
    updated_at: datetime = _at()


class CustomerScore(RetentionTable, table=True):
    """The latest score of each customer, from score.updated: lets any new alert carry its value at risk.

    Complaints and scores arrive on different topics in no mutual order, so an alert raised by a
    complaint cannot wait for "the" score; it takes the latest one known here.
    """

    __tablename__ = "customer_scores"

    customer_id: str = Field(primary_key=True, max_length=100)
    churn_risk: float
    clv: float | None = None
    value_at_risk: float | None = None
    value_tier: str | None = Field(default=None, max_length=20)
    p_alive: float | None = None
    lifecycle_stage: str | None = Field(default=None, max_length=20)
    as_of: datetime = _at()
    updated_at: datetime = _at()


class Signal(RetentionTable, table=True):
    """Consumed events the rules watch (scores, complaints, surveys), kept for risk_jump and preview.

    They hold ids, numbers and classifications only (the contracts carry no free text), so they are
    not personal data beyond the pseudonymous customer id. Pruned after signal_retention_days.
    """

    __tablename__ = "signals"
    __table_args__ = (
        # A customer's recent scores: the rules' history, read for most scores judged.
        Index("ix_signals_customer_type_at", "customer_id", "event_type", "at"),
        # Periods across customers (preview, pruning). BRIN on PostgreSQL: tiny for an append-mostly time
        # column, and never cheaper than the index above for one customer's history, so a cached generic
        # plan or statistics lagging a fast-growing table cannot make the history read scan every
        # customer's signals (a btree on `at`, alone or after event_type, let that happen; docs/performance/).
        Index("ix_signals_at", "at", postgresql_using="brin"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=200, unique=True)
    event_type: str = Field(max_length=100)
    customer_id: str = Field(max_length=100)
    at: datetime = _at()
    data: dict[str, Any] = _json(dict)
    # Of a score.updated (else None): what the risk-jump and lifecycle-decline rules read as history.
    churn_risk: float | None = None
    lifecycle_stage: str | None = Field(default=None, max_length=40)


class Customer(RetentionTable, table=True):
    """Replica of what retention needs from crm.customer.v1: who owns the customer, segment, status."""

    __tablename__ = "customers"

    customer_id: str = Field(primary_key=True, max_length=100)
    owner: str | None = Field(default=None, max_length=100)
    segment: str | None = Field(default=None, max_length=100)
    status: str | None = Field(default=None, max_length=20)
    # An account-managed tier (attributes.tier or attributes.value_tier) overrides the computed one.
    tier: str | None = Field(default=None, max_length=20)
    version: int = 0
    first_seen: datetime = _at()
    erased_at: datetime | None = _at(nullable=True)
    updated_at: datetime = _at()


class StatusChange(RetentionTable, table=True):
    __tablename__ = "status_changes"

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=200, unique=True)
    customer_id: str = Field(max_length=100, index=True)
    previous_status: str | None = Field(default=None, max_length=20)
    status: str = Field(max_length=20)
    reason: str | None = Field(default=None, max_length=100)
    at: datetime = _at(index=True)


class AlertRule(RetentionTable, table=True):
    __tablename__ = "rules"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    kind: RuleKind = Field(sa_type=String(40))
    reason: str = Field(max_length=64, index=True)
    severity: Severity = Field(sa_type=String(20))
    params: dict[str, Any] = _json(dict)
    enabled: bool = _flag(True)
    created_at: datetime = _at()
    updated_at: datetime = _at()


class Playbook(RetentionTable, table=True):
    __tablename__ = "playbooks"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    reason: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    steps: list[dict[str, Any]] = _json(list)
    # tier (or "default") -> sequence definition (sequences.SequenceDef); empty: the steps become tasks at once
    sequences: dict[str, Any] = _json(dict)
    control_share: float = 0.0
    enabled: bool = _flag(True)
    created_at: datetime = _at()
    updated_at: datetime = _at()


class Task(RetentionTable, table=True):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_status_due", "status", "due_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    alert_id: str | None = Field(default=None, max_length=36, index=True)
    customer_id: str = Field(max_length=100, index=True)
    reason: str = Field(max_length=64)
    action: Action = Field(sa_type=String(40))
    owner: str | None = Field(default=None, max_length=100, index=True)
    status: TaskStatus = Field(default=TaskStatus.open, sa_type=String(20))
    due_at: datetime = _at()
    note: str | None = Field(default=None, max_length=2000)
    completed_at: datetime | None = _at(nullable=True)
    created_at: datetime = _at()


class Webhook(RetentionTable, table=True):
    __tablename__ = "webhooks"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    url: str = Field(max_length=2000)
    event_types: list[str] = _json(list)  # empty: every retention event
    # Needed in clear to sign; never returned by the API.
    secret: str = Field(max_length=200)
    active: bool = _flag(True)
    created_at: datetime = _at()


class WebhookDelivery(RetentionTable, table=True):
    """One event to one webhook: written with the change (an outbox for webhooks), sent by a loop."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    webhook_id: str = Field(max_length=36, index=True)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=100)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: DeliveryStatus = Field(default=DeliveryStatus.pending, sa_type=String(20))
    attempts: int = 0
    next_attempt_at: datetime = _at()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _at()
    delivered_at: datetime | None = _at(nullable=True)


class AlertChange(RetentionTable, table=True):
    """Log of alert changes for the SSE stream: seq is the event id a reconnecting client resumes from."""

    __tablename__ = "alert_changes"

    seq: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    alert_id: str = Field(max_length=36)
    event_type: str = Field(max_length=40)
    at: datetime = _at(index=True)
    data: dict[str, Any] = _json(dict)


class CatalogVersion(RetentionTable, table=True):
    """One row: a token that triggers on rules, playbooks and webhooks set to a new random value on any change.

    Processes keep those three tables in memory and read only this token per transaction (catalog.py).
    """

    __tablename__ = "catalog_version"

    id: int = Field(default=1, primary_key=True)
    token: str = Field(max_length=32)


CATALOG_TABLES = ("rules", "playbooks", "webhooks")
_SQLITE_CHANGES = ("INSERT", "UPDATE", "DELETE")  # SQLite has row triggers only, one per kind of change


def catalog_version_ddl(dialect: str) -> list[str]:
    """The token's first row and the triggers that renew it; the migration and create_all both run these."""
    first = f"INSERT INTO catalog_version (id, token) VALUES (1, '{uuid.uuid4().hex}')"
    if dialect == "postgresql":
        renew = (
            "CREATE FUNCTION renew_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "UPDATE catalog_version SET token = md5(random()::text || clock_timestamp()::text); RETURN NULL; END $$"
        )
        return [
            first,
            renew,
            *(
                f"CREATE TRIGGER {table}_renew_catalog_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION renew_catalog_version()"
                for table in CATALOG_TABLES
            ),
        ]
    return [
        first,
        *(
            f"CREATE TRIGGER {table}_{change.lower()}_renew_catalog_version AFTER {change} ON {table} "
            "BEGIN UPDATE catalog_version SET token = lower(hex(randomblob(16))); END"
            for table in CATALOG_TABLES
            for change in _SQLITE_CHANGES
        ),
    ]


def drop_catalog_version_ddl(dialect: str) -> list[str]:
    """Undoes catalog_version_ddl's triggers (the migration's downgrade)."""
    if dialect == "postgresql":
        return [
            *(f"DROP TRIGGER {table}_renew_catalog_version ON {table}" for table in CATALOG_TABLES),
            "DROP FUNCTION renew_catalog_version()",
        ]
    return [
        f"DROP TRIGGER {table}_{change.lower()}_renew_catalog_version"
        for table in CATALOG_TABLES
        for change in _SQLITE_CHANGES
    ]


@event.listens_for(metadata, "after_create")
def _create_catalog_version(target: MetaData, connection: Connection, **kw: Any) -> None:
    # create_all (tests, scratch databases) gets the same row and triggers as a migrated database.
    created = {t.name for t in kw.get("tables") or target.sorted_tables}
    if {CatalogVersion.__tablename__, *CATALOG_TABLES} <= created:
        for statement in catalog_version_ddl(connection.dialect.name):
            connection.exec_driver_sql(statement)


# ---- API shapes ----------------------------------------------------------------------------------

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
Tier = Annotated[
    str, AfterValidator(lambda t: _one_of(t, TIERS)), WithJsonSchema({"type": "string", "enum": list(TIERS)})
]


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"must be one of {list(allowed)}")
    return value


class Page(BaseModel):
    total: int
    limit: int
    offset: int


class FactorPublic(BaseModel):
    code: str
    label: str
    contribution: float


class AlertPublic(BaseModel):
    id: str
    customer_id: str
    reason: str
    rule_id: str | None
    severity: Severity
    status: AlertStatus
    trigger_count: int
    first_triggered_at: UtcDatetime
    last_triggered_at: UtcDatetime
    churn_risk: float | None
    value_at_risk: float | None
    priority: float | None
    owner: str | None
    tier: str | None
    segment: str | None
    control: bool
    factors: list[FactorPublic]
    event_ids: list[str]
    acknowledged_at: UtcDatetime | None
    snoozed_until: UtcDatetime | None
    snooze_reason: str | None
    outcome: Outcome | None
    outcome_note: str | None
    resolved_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def of(cls, alert: Alert) -> AlertPublic:
        data = {name: getattr(alert, name) for name in cls.model_fields if name != "priority"}
        return cls.model_validate({**data, "priority": alert.value_at_risk})


class AlertsPublic(Page):
    """One page of alerts; total counts every alert matching the filters."""

    items: list[AlertPublic]


class AlertAcknowledge(BaseModel):
    owner: str | None = PydanticField(default=None, min_length=1, max_length=100)


class AlertSnooze(BaseModel):
    until: UtcDatetime
    reason: str = PydanticField(min_length=1, max_length=500)


class AlertResolve(BaseModel):
    outcome: Outcome
    note: str | None = PydanticField(default=None, max_length=2000)


class RuleParamsBody(BaseModel):
    """Parameters of a rule; which ones a kind needs is checked per kind (422 naming params.<field>)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = PydanticField(default=None, ge=0, le=1)
    high_at: float | None = PydanticField(default=None, ge=0, le=1)
    delta: float | None = PydanticField(default=None, gt=0, le=1)
    within_days: float | None = PydanticField(default=None, gt=0, le=365)
    tiers: list[Tier] = []
    severities: list[Severity] = []
    nps_max: int | None = PydanticField(default=None, ge=0, le=10)
    csat_max: int | None = PydanticField(default=None, ge=1, le=5)


ReasonCode = Annotated[str, PydanticField(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = PydanticField(min_length=1, max_length=200)
    kind: RuleKind
    reason: ReasonCode | None = None  # default: the kind's reason code
    severity: Severity
    params: RuleParamsBody = RuleParamsBody()
    enabled: bool = True


class RuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = PydanticField(default=None, min_length=1, max_length=200)
    reason: ReasonCode | None = None
    severity: Severity | None = None
    params: RuleParamsBody | None = None
    enabled: bool | None = None


class RulePublic(BaseModel):
    id: str
    name: str
    kind: RuleKind
    reason: str
    severity: Severity
    params: dict[str, Any]
    enabled: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


class RulesPublic(Page):
    items: list[RulePublic]


class PreviewWindow(BaseModel):
    from_: UtcDatetime = PydanticField(alias="from")
    to: UtcDatetime


class RulePreview(PreviewWindow):
    """An unsaved rule body previewed over a period."""

    rule: RuleCreate


class PreviewCustomer(BaseModel):
    customer_id: str
    first_triggered_at: UtcDatetime
    triggers: int
    severity: Severity


class PreviewPublic(BaseModel):
    rule_id: str | None
    reason: str
    from_: UtcDatetime = PydanticField(serialization_alias="from")
    to: UtcDatetime
    alerts: int
    triggers: int
    customers: list[PreviewCustomer]


def _sequence_key(key: str) -> str:
    if key != DEFAULT_KEY and key not in TIERS:
        raise ValueError(f"must be {DEFAULT_KEY!r} or one of {list(TIERS)}")
    return key


class StepBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    due_in_hours: float = PydanticField(gt=0, le=24 * 365)
    only_tiers: list[Tier] = []


class PlaybookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: ReasonCode
    name: str = PydanticField(min_length=1, max_length=200)
    steps: list[StepBody] = PydanticField(max_length=20)
    sequences: dict[Annotated[str, AfterValidator(_sequence_key)], SequenceDef] = PydanticField(
        default_factory=dict, max_length=10
    )
    control_share: float = PydanticField(default=0.0, ge=0, le=1)
    enabled: bool = True


class PlaybookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = PydanticField(default=None, min_length=1, max_length=200)
    steps: list[StepBody] | None = PydanticField(default=None, max_length=20)
    sequences: dict[Annotated[str, AfterValidator(_sequence_key)], SequenceDef] | None = PydanticField(
        default=None, max_length=10
    )
    control_share: float | None = PydanticField(default=None, ge=0, le=1)
    enabled: bool | None = None


class PlaybookPublic(BaseModel):
    id: str
    reason: str
    name: str
    steps: list[StepBody]
    sequences: dict[str, SequenceDef] = {}
    control_share: float
    enabled: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


class PlaybooksPublic(Page):
    items: list[PlaybookPublic]


class TaskPublic(BaseModel):
    id: str
    alert_id: str | None
    customer_id: str
    reason: str
    action: Action
    owner: str | None
    status: TaskStatus
    due_at: UtcDatetime
    overdue: bool
    note: str | None
    completed_at: UtcDatetime | None
    created_at: UtcDatetime

    @classmethod
    def of(cls, task: Task, now: datetime) -> TaskPublic:
        data = {name: getattr(task, name) for name in cls.model_fields if name != "overdue"}
        overdue = task.status == TaskStatus.open and as_utc(task.due_at) < now
        return cls.model_validate({**data, "overdue": overdue})


class TasksPublic(Page):
    items: list[TaskPublic]


class TaskComplete(BaseModel):
    note: str | None = PydanticField(default=None, max_length=2000)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    event_types: list[str] = []  # empty: every retention event
    secret: str = PydanticField(min_length=16, max_length=200)


class WebhookPublic(BaseModel):
    id: str
    url: str
    event_types: list[str]
    active: bool
    created_at: UtcDatetime


class WebhooksPublic(Page):
    items: list[WebhookPublic]


class DeliveryPublic(BaseModel):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: UtcDatetime
    last_status_code: int | None
    last_error: str | None
    created_at: UtcDatetime
    delivered_at: UtcDatetime | None


class DeliveriesPublic(Page):
    items: list[DeliveryPublic]


class GroupRatesPublic(BaseModel):
    alerts: int
    churned: int
    churn_rate: float | None


class MetricsPublic(BaseModel):
    key: str | None = None  # the group's tier, segment or rule id; None for the whole population
    customers: int
    churned: int
    churn_rate: float | None
    retention_rate: float | None
    alerted_customers: int
    positive_customers: int
    saved_customers: int
    save_rate: float | None
    precision: float | None
    churned_with_warning: int
    recall: float | None
    median_warning_days: float | None
    treated: GroupRatesPublic
    control: GroupRatesPublic
    uplift: float | None


class RetentionMetricsPublic(BaseModel):
    from_: UtcDatetime = PydanticField(serialization_alias="from")
    to: UtcDatetime
    group_by: str | None
    overall: MetricsPublic
    groups: list[MetricsPublic]


# ---- consent replica and touches (docs/consent.md) ------------------------------------------------------


class ConsentReplica(RetentionTable, table=True):
    """Replica of consent.changed: the customer's consent per channel and contact preferences, latest version."""

    __tablename__ = "consent_replica"

    customer_id: str = Field(primary_key=True, max_length=100)
    version: int = 0
    channels: dict[str, str] = _json(dict)  # channel -> opt_in | opt_out
    timezone: str | None = Field(default=None, max_length=64)
    cap_max_touches: int | None = None
    cap_window_days: float | None = None
    quiet_start: str | None = Field(default=None, max_length=5)
    quiet_end: str | None = Field(default=None, max_length=5)
    updated_at: datetime = _at()


class Touch(RetentionTable, table=True):
    """A playbook step that would contact the customer: allowed (its task exists) or blocked, with the reason.

    Ids and codes only; kept after the customer's erasure as an anonymous aggregate (like tasks)."""

    __tablename__ = "touches"
    __table_args__ = (
        Index("ix_touches_customer_created", "customer_id", "created_at"),
        Index("ix_touches_created_verdict", "created_at", "verdict"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100)
    alert_id: str | None = Field(default=None, max_length=36)
    task_id: str | None = Field(default=None, max_length=36)  # the task it became; null when blocked
    reason: str = Field(max_length=64)  # the alert reason (playbook) it came from
    action: str = Field(max_length=40)  # the step kind
    channel: str = Field(max_length=20)
    allowed: bool = _flag(True)
    verdict: str = Field(max_length=30)  # allowed, or why it was blocked (contact_policy.Verdict)
    at: datetime = _at()  # when the contact would happen (the task's due time)
    created_at: datetime = _at()


class TouchPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    customer_id: str
    alert_id: str | None
    task_id: str | None
    reason: str
    action: str
    channel: str
    allowed: bool
    verdict: str
    at: UtcDatetime
    created_at: UtcDatetime


class TouchesPublic(Page):
    items: list[TouchPublic]


class SurveyLink(RetentionTable, table=True):
    """A one-time survey link sent as a touch; the token is derived (signed), never stored."""

    __tablename__ = "survey_links"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100, index=True)
    alert_id: str | None = Field(default=None, max_length=36)
    task_id: str | None = Field(default=None, max_length=36)
    survey: str = Field(max_length=10)  # nps | csat
    channel: str = Field(max_length=20)
    expires_at: datetime = _at()
    answered_at: datetime | None = _at(nullable=True)
    score: int | None = None
    dimensions: dict[str, int] = _json(dict)
    created_at: datetime = _at()


class SurveyQuestion(BaseModel):
    """What a respondent sees: the question, never anything about the customer."""

    survey: str
    min: int
    max: int
    dimensions: list[str]
    expires_at: UtcDatetime


class SurveyAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: int = PydanticField(description="nps: 0-10, csat: 1-5")
    dimensions: dict[str, int] = PydanticField(
        default_factory=dict, description="product, service_support, relationship, on the same scale"
    )


class SurveyReceipt(BaseModel):
    status: str = "recorded"


class EnrolmentStatus(StrEnum):
    active = "active"
    completed = "completed"
    stopped = "stopped"


class Enrolment(RetentionTable, table=True):
    """A customer in a playbook's sequence. Its next step is the timer `due_at` (null once finished), claimed
    by the engine (sequence_engine.py) in the transaction that runs the step; `version` guards against two
    engines running the same step. The definition is a copy taken at enrolment: editing the playbook
    changes new enrolments only."""

    __tablename__ = "enrolments"
    __table_args__ = (
        Index("ix_enrolments_due", "due_at"),
        Index("ix_enrolments_customer", "customer_id", "started_at"),
        UniqueConstraint("active_slot", name="uq_enrolments_active_slot"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100)
    alert_id: str | None = Field(default=None, max_length=36)
    reason: str = Field(max_length=64)
    tier: str | None = Field(default=None, max_length=20)
    owner: str | None = Field(default=None, max_length=100)
    definition: dict[str, Any] = _json(dict)
    status: EnrolmentStatus = Field(default=EnrolmentStatus.active, sa_type=String(20))
    stop_reason: str | None = Field(default=None, max_length=100)
    cursor: int = 0
    waiting_since: datetime | None = _at(nullable=True)
    wait_began: datetime | None = _at(nullable=True)
    last_task_id: str | None = Field(default=None, max_length=36)
    due_at: datetime | None = _at(nullable=True)
    version: int = 0
    steps_run: int = 0
    trail: list[dict[str, Any]] = _json(list)  # the last steps passed: id, kind, at, result
    active_slot: str | None = Field(default=None, max_length=200)  # customer:reason while active
    started_at: datetime = _at()
    finished_at: datetime | None = _at(nullable=True)
    updated_at: datetime = _at()


class EnrolmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    alert_id: str | None
    reason: str
    tier: str | None
    status: EnrolmentStatus
    stop_reason: str | None
    cursor: int
    due_at: UtcDatetime | None
    steps_run: int
    trail: list[dict[str, Any]]
    started_at: UtcDatetime
    finished_at: UtcDatetime | None


class EnrolmentsPublic(Page):
    items: list[EnrolmentPublic]


class EnrolmentStop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = PydanticField(default="manual", min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")


# The read model's tables (fact_events, customer_facts, churn_facts) belong to this metadata too.
from services.retention import read_model as read_model  # noqa: E402
from services.retention.campaigns import models as campaign_models  # noqa: E402, F401
from services.retention.followups import models as followup_models  # noqa: E402, F401
from services.retention.member_tiers import models as member_tier_models  # noqa: E402, F401
from services.retention.waits import models as wait_models  # noqa: E402, F401
