"""What the interaction service's api and consume roles run: its routes, event handlers and background loops."""

from servicekit.service import ServiceComponents
from services.interaction.handlers import BEFORE_BATCH, HANDLERS
from services.interaction.reports_router import router as reports_router
from services.interaction.router import router
from services.interaction.watchers import sweep_parked, watch_overdue

COMPONENTS = ServiceComponents(
    routers=[router, reports_router],
    handlers=HANDLERS,
    background=[watch_overdue, sweep_parked],
    before_batch=BEFORE_BATCH,
)
