"""What the interaction service's api and consume roles run: its routes, event handlers and background loops."""

from servicekit.service import ServiceComponents
from services.interaction.background import sweep_parked, watch_overdue
from services.interaction.handlers import BEFORE_BATCH, HANDLERS
from services.interaction.replica.backfill import run_owner_backfill
from services.interaction.router import router

COMPONENTS = ServiceComponents(
    routers=[router],
    handlers=HANDLERS,
    background=[watch_overdue, sweep_parked, run_owner_backfill],
    before_batch=BEFORE_BATCH,
)
