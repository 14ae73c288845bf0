"""The retention service's declaration: tables, settings, consumed topics; its code is in components.py."""

from pathlib import Path

from contracts import topics
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
)
