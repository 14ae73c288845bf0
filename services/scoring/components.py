"""What the scoring service's api and consume roles run: its routes, event handlers and background loops."""

from servicekit.service import ServiceComponents
from services.scoring.background import run_jobs, sweep_silent_customers
from services.scoring.handlers import BEFORE_BATCH, HANDLERS
from services.scoring.reports.router import reports
from services.scoring.scores.router import router as scores_router
from services.scoring.segments.router import segments
from services.scoring.training.router import router as training_router
from services.scoring.value.router import router as value_router

COMPONENTS = ServiceComponents(
    routers=[scores_router, training_router, value_router, reports, segments],
    handlers=HANDLERS,
    before_batch=BEFORE_BATCH,
    background=[run_jobs, sweep_silent_customers],
)
