"""Events published by the retention service on crm.retention.v1.

They carry ids, classifications and numbers, never the free-text notes (those stay erasable in the
retention database).
"""

from datetime import datetime

from contracts import topics
from contracts.scoring import Factor
from servicekit.events.envelope import EventData


class AlertEvent(EventData):
    topic = topics.RETENTION
    alert_id: str
    customer_id: str
    reason: str
    severity: str
    status: str
    trigger_count: int
    churn_risk: float | None = None  # the customer's latest known churn risk
    value_at_risk: float | None = None
    owner: str | None = None
    factors: list[Factor] = []
    event_ids: list[str] = []
    at: datetime
    # Added in phase 2 (additive): the rule that raised it, the customer's tier and segment, whether
    # the playbook held this alert back as a control (no action), and the snooze end.
    rule_id: str | None = None
    tier: str | None = None
    segment: str | None = None
    control: bool = False
    snoozed_until: datetime | None = None


class AlertRaised(AlertEvent):
    event_type = "alert.raised"


class AlertUpdated(AlertEvent):
    event_type = "alert.updated"


class AlertResolved(AlertEvent):
    event_type = "alert.resolved"
    outcome: str | None = None


class TaskEvent(EventData):
    """A retention task for the customer's account manager, from the playbook of the alert's reason."""

    topic = topics.RETENTION
    task_id: str
    customer_id: str
    alert_id: str | None = None  # None for tasks not tied to an alert (win-back after churn)
    reason: str
    action: str  # call_owner, service_recovery, loyalty_offer, executive_outreach, satisfaction_survey, win_back_offer
    owner: str | None = None
    status: str
    due_at: datetime
    at: datetime


class TaskCreated(TaskEvent):
    event_type = "task.created"


class TaskCompleted(TaskEvent):
    event_type = "task.completed"
    completed_at: datetime


class SurveyRequested(EventData):
    """A survey touch was allowed: the organisation's e-mail or SMS system sends the customer the link
    ``<public base>/api/v1/surveys/respond/<token>`` (docs/consent.md#surveys). The token is a one-time
    capability to answer this survey, nothing more; it names no customer data."""

    topic = topics.RETENTION
    event_type = "survey.requested"
    link_id: str
    customer_id: str
    alert_id: str | None = None
    task_id: str | None = None
    survey: str  # nps (0-10) or csat (1-5)
    channel: str  # the touch's channel (email, sms, ...)
    token: str
    expires_at: datetime
    at: datetime


class SurveyResponded(EventData):
    """A survey link was answered (once). The interaction service records it as a survey interaction,
    so the customer is rescored."""

    topic = topics.RETENTION
    event_type = "survey.responded"
    link_id: str
    customer_id: str
    survey: str  # nps (0-10) or csat (1-5)
    score: int
    dimensions: dict[str, int] = {}  # product, service_support, relationship, on the survey's scale
    answered_at: datetime


class TouchRequested(EventData):
    """An automated touch of a playbook sequence passed consent and the contact policy: the organisation's
    e-mail, SMS or marketing system delivers it (from this topic or the signed webhook). Ids and codes only:
    the sender looks the customer's address up itself (docs/sequences.md)."""

    topic = topics.RETENTION
    event_type = "touch.requested"
    touch_id: str  # the recorded touch's task_id: one per allowed touch, a deduplication key for the sender
    enrolment_id: str
    customer_id: str
    alert_id: str | None = None
    reason: str  # the playbook's reason code
    step_id: str
    action: str  # loyalty_offer, win_back_offer, ...
    channel: str  # email, sms, post, ...
    template: str = ""  # the sender's template name, as the sequence names it
    at: datetime


class CampaignTouchRequested(EventData):
    """A win-back campaign's offer passed consent and the contact policy for one treated customer: the
    organisation's e-mail, SMS or marketing system delivers it (from this topic or the signed webhook).
    Ids, codes and numbers only; the sender looks the address up itself (docs/campaigns.md)."""

    topic = topics.RETENTION
    event_type = "campaign.touch_requested"
    touch_id: str  # the recorded touch: one per customer and campaign, a deduplication key for the sender
    campaign_id: str
    customer_id: str
    offer_id: str
    offer_code: str  # the code the ERP sees on the order that redeems it
    offer_kind: str  # discount_percent, discount_amount, free_shipping, loyalty_points, gift, service_upgrade
    offer_value: float | None = None
    channel: str  # email, sms, phone, post, visit
    template: str = ""  # the sender's template name, as the campaign names it
    valid_until: datetime  # the offer can be redeemed until then
    at: datetime
    # A campaign run as a sequence sends one per touch step (the offer, a reminder): the step's id.
    step_id: str | None = None
    # The customer's loyalty member tier and its benefit codes, for the offer to use (a gold member's free
    # shipping with the discount); none known: null and empty.
    member_tier: str | None = None
    member_benefits: list[str] = []


class CampaignLaunched(EventData):
    """A campaign drew its audience: how many were treated, held out, reached and blocked (and why).
    Keyed by the campaign id: it concerns no single customer."""

    topic = topics.RETENTION
    event_type = "campaign.launched"
    campaign_id: str
    offer_id: str
    segment_id: str
    channel: str
    audience: int
    treated: int
    holdout: int
    reached: int
    blocked: int
    blocked_by: dict[str, int] = {}  # contact-policy verdict -> customers
    at: datetime

    def subject(self) -> str:
        return self.campaign_id


MODELS = (
    AlertRaised,
    AlertUpdated,
    AlertResolved,
    TaskCreated,
    TaskCompleted,
    SurveyRequested,
    SurveyResponded,
    TouchRequested,
    CampaignTouchRequested,
    CampaignLaunched,
)
