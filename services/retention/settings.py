import ipaddress
from functools import cache
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import SettingsConfigDict

from servicekit.production import secret_problem
from servicekit.settings import SERVICE_PORTS, ServiceSettings, local_url
from services.retention.reports.loyalty import Thresholds

DEV_SURVEY_SECRET = "dev-survey-link-secret-change-me-0123456789"


class ContactCap(BaseModel):
    max_touches: int = Field(ge=0)
    window_days: float = Field(gt=0)


_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class RetentionSettings(ServiceSettings):
    """Alert rules and playbooks live in the database (seeded by the migration); these tune the loops."""

    model_config = SettingsConfigDict(env_prefix="RETENTION_", extra="ignore")

    name: str = "retention"
    port: int = SERVICE_PORTS["retention"]

    # A churn-risk alert closes as saved once the risk stayed below its rule's threshold this long.
    saved_after_days: float = Field(14.0, gt=0)
    # Consumed scores, complaints and surveys kept for risk_jump and rule preview.
    signal_retention_days: float = Field(400.0, gt=0)
    # Look-back of recall: a churn counts as warned if an alert was first raised this long before it.
    warning_lookback_days: float = Field(180.0, gt=0)
    # Signals (scores, complaints, surveys) whose business time lies further back than this raise no
    # alert as they stream in (an imported history); they still update scores and the signal log.
    # After a backfill, POST /alerts/evaluate judges every customer once. 0: every signal is live.
    alert_history_horizon_days: float = Field(30.0, ge=0)
    # Snooze wake-up, auto-save and pruning run this often (consume role).
    housekeeping_interval_s: float = Field(5.0, gt=0)
    # Playbook sequences (consume role; docs/sequences.md): how often the engine looks for due steps.
    sequence_interval_s: float = Field(5.0, gt=0)
    # How many due enrolments one engine transaction claims and runs (a burst costs one batch of memory).
    sequence_batch_size: int = Field(200, ge=1, le=5000)
    # Alert changes kept for SSE Last-Event-ID replay.
    alert_changes_retention_hours: float = Field(72.0, gt=0)
    stream_poll_interval_s: float = Field(1.0, gt=0)  # how often the SSE stream looks for alert changes
    stream_keepalive_s: float = Field(15.0, gt=0)  # a comment line on an idle stream this often
    # Changes buffered per SSE client; a client that falls this far behind is dropped and resumes with Last-Event-ID.
    stream_queue_max: int = Field(1000, ge=1)
    # How long the SSE stream holds later changes at a gap in seq: a lower seq can commit after a higher
    # one on PostgreSQL; a rolled-back transaction's never fills its gap.
    stream_gap_wait_s: float = Field(5.0, ge=0)

    webhook_poll_interval_s: float = Field(1.0, gt=0)  # how often due webhook deliveries are looked for
    webhook_batch_size: int = Field(50, ge=1)  # deliveries claimed per round
    webhook_timeout_s: float = Field(5.0, gt=0)  # timeout of each HTTP call to a subscriber
    webhook_max_attempts: int = Field(8, ge=1)  # then the delivery is marked failed
    # Delay before retry n: base x 2^(n-1), at most the cap.
    webhook_backoff_base_s: float = Field(2.0, gt=0)
    webhook_backoff_cap_s: float = Field(900.0, gt=0)  # the longest delay between two attempts
    # Webhooks go to public addresses only. These CIDRs are allowed besides (local development, e.g.
    # ["127.0.0.0/8"], or a known internal receiver); loopback, link-local (cloud metadata), private,
    # multicast and reserved addresses are refused otherwise, at creation and at each delivery.
    webhook_allowed_networks: list[str] = Field(default_factory=list)
    # Delivered and failed webhook deliveries (their payloads are copies of events) are deleted after this.
    webhook_delivery_retention_days: float = Field(14.0, gt=0)

    # Contact policy (docs/consent.md), checked before every playbook step that contacts the customer.
    # Frequency cap per value tier, a JSON object, e.g. {"lead": {"max_touches": 1, "window_days": 14}}.
    contact_tier_caps: dict[str, ContactCap] = Field(default_factory=dict)
    contact_default_cap: ContactCap | None = None  # for tiers without their own cap; null: no cap
    # Quiet hours on the customer's local clock ("HH:MM"; start after end spans midnight); null: none.
    contact_quiet_start: str | None = Field(None, pattern=_HHMM)
    contact_quiet_end: str | None = Field(None, pattern=_HHMM)  # local "HH:MM" when quiet hours end
    # The channels quiet hours apply to (an e-mail or a letter waits in the inbox).
    contact_quiet_channels: list[str] = Field(default_factory=lambda: ["phone", "sms", "visit"])
    # Channels a customer must have opted in to (none recorded blocks); the others need only no opt-out.
    contact_opt_in_channels: list[str] = Field(default_factory=list)
    contact_default_timezone: str = "UTC"  # for customers without a time zone of their own

    # Surveys sent as touches (docs/consent.md#surveys): one-time links signed with this secret (HMAC-SHA256),
    # valid this long. Production mode refuses the development default.
    survey_link_secret: str = DEV_SURVEY_SECRET
    survey_link_ttl_days: float = Field(14.0, gt=0)  # a survey link expires this long after it was sent
    survey_kind: str = Field("nps", pattern=r"^(nps|csat)$")  # the question a survey link asks

    def secret_problems(self) -> list[str]:
        problem = secret_problem("RETENTION_SURVEY_LINK_SECRET", self.survey_link_secret, DEV_SURVEY_SECRET)
        return [problem] if problem else []

    def default_secrets(self) -> list[str]:
        return ["RETENTION_SURVEY_LINK_SECRET"] if self.survey_link_secret == DEV_SURVEY_SECRET else []

    @field_validator("contact_default_timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        ZoneInfo(value)  # an unknown zone fails at start-up
        return value

    # Win-back campaigns (docs/campaigns.md): the audience is a segment of the scoring service, asked directly.
    scoring_url: str = local_url("scoring")
    scoring_timeout_s: float = Field(30.0, gt=0)  # reading a segment's members at launch may take a while
    campaign_interval_s: float = Field(30.0, gt=0)  # how often scheduled campaigns due to start are launched
    followup_interval_s: float = Field(60.0, gt=0)  # how often scheduled follow-ups per tier are looked for
    campaign_max_audience: int = Field(100_000, ge=1, le=1_000_000)  # a larger segment is refused at launch

    # Retention reports (docs/reports.md, "Retention").
    # An alert counts as answered in time when acknowledged within this many hours of being raised.
    alert_response_sla_hours: float = Field(24.0, gt=0)
    # A churn's suggested reason weighs the signals dated this many days before it.
    suggestion_lookback_days: float = Field(180.0, gt=0, le=3650)
    # Loyalty typing (services/retention/reports/loyalty.py): behaviour is high with at least this many orders ...
    loyalty_repeat_orders: int = Field(3, ge=1)
    loyalty_min_tenure_days: float = Field(180.0, ge=0)  # ... a first order at least this many days ago ...
    loyalty_min_share_of_wallet: float = Field(0.5, ge=0, le=1)  # ... this share of wallet where known ...
    # ... and no decline: orders in the latest window of this many days against the window before it.
    loyalty_trend_window_days: float = Field(90.0, gt=0)
    # Declining: the latest window has at most this share of the previous window's orders.
    loyalty_decline_ratio: float = Field(0.5, ge=0, lt=1)
    loyalty_nps_promoter: int = Field(9, ge=0, le=10)  # attitude is high with the latest NPS at least this ...
    loyalty_csat_satisfied: int = Field(4, ge=1, le=5)  # ... or, without an NPS answer, the latest CSAT

    def loyalty_thresholds(self) -> Thresholds:
        return Thresholds(
            repeat_orders=self.loyalty_repeat_orders,
            min_tenure_days=self.loyalty_min_tenure_days,
            min_share_of_wallet=self.loyalty_min_share_of_wallet,
            trend_window_days=self.loyalty_trend_window_days,
            decline_ratio=self.loyalty_decline_ratio,
            nps_promoter=self.loyalty_nps_promoter,
            csat_satisfied=self.loyalty_csat_satisfied,
        )

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # a typo fails at start-up, not at the first delivery
        return value


@cache
def get_settings() -> RetentionSettings:
    """Settings for code without a request or app at hand (event handlers); read once, on first use."""
    return RetentionSettings()
