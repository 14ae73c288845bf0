"""The scoring service's declaration: tables, settings, consumed topics; its code is in components.py."""

from pathlib import Path

from contracts import topics
from servicekit.service import ServiceSpec
from services.scoring.common import metadata
from services.scoring.scores import models as _scores  # noqa: F401  (its tables join metadata)
from services.scoring.segments import models as _segments  # noqa: F401
from services.scoring.settings import ScoringSettings
from services.scoring.training import models as _training  # noqa: F401

SPEC = ServiceSpec(
    name="scoring",
    title="Scoring service",
    settings_cls=ScoringSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    components="services.scoring.components",
    consumes=[topics.CUSTOMER, topics.INTERACTION],
)
