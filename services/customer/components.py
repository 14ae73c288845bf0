"""What the customer service's api and consume roles run: its routes, event handlers and background loops."""

from servicekit.service import ServiceComponents
from services.customer.consent_router import router as consent_router
from services.customer.handlers import HANDLERS
from services.customer.housekeeping import purge_idempotency_keys
from services.customer.lookup import router as lookup_router
from services.customer.points_router import router as points_router
from services.customer.reports_router import router as reports_router
from services.customer.router import router
from services.customer.status_bulk import router as status_bulk_router

COMPONENTS = ServiceComponents(
    routers=[lookup_router, status_bulk_router, consent_router, points_router, router, reports_router],
    handlers=HANDLERS,
    background=[purge_idempotency_keys],
)
