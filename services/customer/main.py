"""The customer service's declaration: tables, settings, consumed topics; its code is in components.py."""

from pathlib import Path

from servicekit.events.contracts import topics
from servicekit.service import ServiceSpec
from services.customer.models import metadata
from services.customer.settings import CustomerSettings

SPEC = ServiceSpec(
    name="customer",
    title="Customer service",
    settings_cls=CustomerSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    components="services.customer.components",
    consumes=[topics.ERASURE, topics.ERP_CONSENTS, topics.ERP_LOYALTY],
)
