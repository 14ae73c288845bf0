"""The customer service's declaration: tables, routes, events, background loop (expired idempotency keys)."""

from pathlib import Path

from servicekit.events.contracts import topics
from servicekit.service import ServiceSpec
from services.customer.handlers import HANDLERS
from services.customer.housekeeping import purge_idempotency_keys
from services.customer.models import metadata
from services.customer.router import router
from services.customer.settings import CustomerSettings

SPEC = ServiceSpec(
    name="customer",
    title="Customer service",
    settings_cls=CustomerSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    routers=[router],
    handlers=HANDLERS,
    consumes=[topics.ERASURE],
    background=[purge_idempotency_keys],
)
