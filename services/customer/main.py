"""The customer service's declaration: tables, settings, consumed topics; its code is in components.py."""

from pathlib import Path

from contracts import topics
from servicekit.service import ServiceSpec
from services.customer.common import metadata
from services.customer.consent import models as _consent  # noqa: F401  (its tables join metadata)
from services.customer.customers import models as _customers  # noqa: F401
from services.customer.erasure import models as _erasure  # noqa: F401
from services.customer.points import models as _points  # noqa: F401
from services.customer.settings import CustomerSettings
from services.customer.status import models as _status  # noqa: F401

SPEC = ServiceSpec(
    name="customer",
    title="Customer service",
    settings_cls=CustomerSettings,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    components="services.customer.components",
    consumes=[
        topics.ERASURE,
        topics.ERP_CONSENTS,
        topics.ERP_LOYALTY,
        topics.SCORING,  # score.updated: the customer's scored value tier (the reports' tier filter)
    ],
)
