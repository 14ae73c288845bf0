"""What the customer service's api and consume roles run: its routes, event handlers and background loops."""

from servicekit.service import ServiceComponents
from services.customer.background import purge_idempotency_keys
from services.customer.consent.router import router as consent_router
from services.customer.customers.lookup import router as lookup_router
from services.customer.customers.refs import router as refs_router
from services.customer.customers.router import router as customers_router
from services.customer.erasure.router import router as erasure_router
from services.customer.handlers import BEFORE_BATCH, HANDLERS
from services.customer.points.router import router as points_router
from services.customer.reports.router import router as reports_router
from services.customer.status.bulk import router as status_bulk_router
from services.customer.status.router import router as status_router

COMPONENTS = ServiceComponents(
    # In this order: a fixed path (/customers/lookup, /customers/resolve, /customers/status/bulk) before
    # /customers/{id}.
    routers=[
        lookup_router,
        refs_router,
        status_bulk_router,
        consent_router,
        points_router,
        customers_router,
        erasure_router,
        status_router,
        reports_router,
    ],
    handlers=HANDLERS,
    background=[purge_idempotency_keys],
    before_batch=BEFORE_BATCH,
)
