"""The interaction service's declaration: tables, routes, events."""

from pathlib import Path

from servicekit.events.contracts import topics
from servicekit.service import ServiceSpec
from services.interaction.handlers import HANDLERS
from services.interaction.models import metadata
from services.interaction.router import router
from services.interaction.settings import InteractionSettings
from services.interaction.watchers import sweep_parked, watch_overdue

SPEC = ServiceSpec(
    name="interaction",
    title="Interaction service",
    settings_cls=InteractionSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    routers=[router],
    handlers=HANDLERS,
    consumes=[topics.CUSTOMER, topics.ERP_ORDERS, topics.ERP_RETURNS, topics.SCM_SHIPMENTS],
    background=[watch_overdue, sweep_parked],
)
