"""The retention service's declaration: tables, routes, events, background loops."""

from pathlib import Path

from servicekit.events.contracts import topics
from servicekit.service import ServiceSpec
from services.retention.background import run_housekeeping
from services.retention.delivery import run_webhook_sender
from services.retention.handlers import BEFORE_BATCH, HANDLERS
from services.retention.models import metadata
from services.retention.router import router
from services.retention.settings import RetentionSettings

SPEC = ServiceSpec(
    name="retention",
    title="Retention service",
    settings_cls=RetentionSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    routers=[router],
    handlers=HANDLERS,
    before_batch=BEFORE_BATCH,
    consumes=[topics.SCORING, topics.INTERACTION, topics.CUSTOMER],
    background=[run_housekeeping, run_webhook_sender],
)
