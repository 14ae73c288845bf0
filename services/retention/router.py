"""The retention service's HTTP routes: each feature's router, in the order the API lists them."""

from fastapi import APIRouter

from services.retention.alerts.router import router as alerts
from services.retention.outcomes.router import router as outcomes
from services.retention.playbooks.router import router as playbooks
from services.retention.rules.router import router as rules
from services.retention.tasks.router import router as tasks
from services.retention.webhooks.router import router as webhooks

router = APIRouter()
for feature in (alerts, rules, playbooks, tasks, outcomes, webhooks):
    router.include_router(feature)
