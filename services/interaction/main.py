"""The interaction service's declaration: tables, settings, consumed topics; its code is in components.py."""

from pathlib import Path

from contracts import topics
from servicekit.runtime_settings import Tunable
from servicekit.service import ServiceSpec
from services.interaction.models import metadata
from services.interaction.settings import InteractionSettings

SPEC = ServiceSpec(
    name="interaction",
    title="Interaction service",
    settings_cls=InteractionSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    components="services.interaction.components",
    consumes=[
        topics.CUSTOMER,
        topics.ERP_ORDERS,
        topics.ERP_RETURNS,
        topics.SCM_SHIPMENTS,
        topics.RETENTION,
        topics.SCORING,  # score.updated: the value tier of the replica's customers
    ],
    tunable=(
        Tunable(
            "complaint_sla_hours",
            "Hours from the complaint until it must be resolved, per severity (complaints recorded from now on).",
        ),
    ),
)
