"""The scoring service's declaration: tables, settings, consumed topics; its code is in components.py."""

from pathlib import Path

from servicekit.events.contracts import topics
from servicekit.service import ServiceSpec
from services.scoring.models import metadata
from services.scoring.settings import ScoringSettings

SPEC = ServiceSpec(
    name="scoring",
    title="Scoring service",
    settings_cls=ScoringSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    components="services.scoring.components",
    consumes=[topics.CUSTOMER, topics.INTERACTION],
)
