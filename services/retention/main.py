"""The retention service's declaration: tables, settings, consumed topics; its code is in components.py."""

from pathlib import Path

from contracts import topics
from servicekit.runtime_settings import Tunable
from servicekit.service import ServiceSpec
from services.retention.models import metadata
from services.retention.settings import RetentionSettings

SPEC = ServiceSpec(
    name="retention",
    title="Retention service",
    settings_cls=RetentionSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    components="services.retention.components",
    consumes=[topics.SCORING, topics.INTERACTION, topics.CUSTOMER],
    tunable=(
        Tunable(
            "contact_quiet_start", "Quiet hours start, on the customer's local clock (HH:MM); null: no quiet hours."
        ),
        Tunable("contact_quiet_end", "Quiet hours end, on the customer's local clock (HH:MM); null: no quiet hours."),
        Tunable(
            "contact_default_cap",
            "Frequency cap for tiers without their own: at most max_touches in window_days; null: no cap.",
        ),
        Tunable(
            "contact_tier_caps", 'Frequency cap per value tier, e.g. {"lead": {"max_touches": 1, "window_days": 14}}.'
        ),
        Tunable("campaign_max_audience", "A campaign whose segment holds more customers is refused at launch."),
        Tunable("alert_response_sla_hours", "An alert is answered in time when acknowledged within this many hours."),
    ),
)
