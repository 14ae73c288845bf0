"""What the retention service's api and consume roles run: its routes, event handlers and background loops."""

from servicekit.service import ServiceComponents
from services.retention.analysis.router import router as analysis_router
from services.retention.background import run_housekeeping, run_loyalty_sweep
from services.retention.campaigns.launch import run_campaigns
from services.retention.campaigns.router import router as campaigns_router
from services.retention.followups.loop import run_followups
from services.retention.followups.router import customer_router as customer_followups_router
from services.retention.followups.router import router as followups_router
from services.retention.followups.router import triggers_router as followup_triggers_router
from services.retention.handlers import BEFORE_BATCH, HANDLERS
from services.retention.reports.loyalty_router import router as loyalty_router
from services.retention.reports.loyalty_today_router import router as loyalty_today_router
from services.retention.reports.router import router as reports_router
from services.retention.router import router
from services.retention.sequences.engine import run_sequences
from services.retention.sequences.router import router as sequences_router
from services.retention.surveys.router import router as surveys_router
from services.retention.touches.router import router as touches_router
from services.retention.webhooks.delivery import run_webhook_sender
from services.retention.work import router as work_router

COMPONENTS = ServiceComponents(
    routers=[
        work_router,
        router,
        touches_router,
        surveys_router,
        reports_router,
        loyalty_router,
        loyalty_today_router,
        sequences_router,
        analysis_router,
        campaigns_router,
        followups_router,
        followup_triggers_router,
        customer_followups_router,
    ],
    handlers=HANDLERS,
    before_batch=BEFORE_BATCH,
    background=[run_housekeeping, run_loyalty_sweep, run_webhook_sender, run_sequences, run_campaigns, run_followups],
)
