"""The scoring service's declaration: tables, routes, events, background loops (jobs, silent-customer sweep)."""

from pathlib import Path

from servicekit.events.contracts import topics
from servicekit.service import ServiceSpec
from services.scoring.handlers import BEFORE_BATCH, HANDLERS
from services.scoring.jobs import run_jobs, sweep_silent_customers
from services.scoring.models import metadata
from services.scoring.router import router
from services.scoring.settings import ScoringSettings

SPEC = ServiceSpec(
    name="scoring",
    title="Scoring service",
    settings_cls=ScoringSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    routers=[router],
    handlers=HANDLERS,
    before_batch=BEFORE_BATCH,
    consumes=[topics.CUSTOMER, topics.INTERACTION],
    background=[run_jobs, sweep_silent_customers],
)
