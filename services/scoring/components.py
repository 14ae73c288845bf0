"""What the scoring service's api and consume roles run: its routes, event handlers and background loops."""

from servicekit.service import ServiceComponents
from services.scoring.handlers import BEFORE_BATCH, HANDLERS
from services.scoring.jobs import run_jobs, sweep_silent_customers
from services.scoring.router import router
from services.scoring.value_router import reports, segments
from services.scoring.value_router import router as value_router

COMPONENTS = ServiceComponents(
    routers=[router, value_router, reports, segments],
    handlers=HANDLERS,
    before_batch=BEFORE_BATCH,
    background=[run_jobs, sweep_silent_customers],
)
