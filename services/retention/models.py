"""Every table of the retention service, for its SPEC and migrations: each feature package's models.py
defines its own tables on the one metadata (db.py); importing them here makes that metadata complete."""

from services.retention.alerts import models as alerts
from services.retention.campaigns import models as campaigns
from services.retention.catalog import models as catalog
from services.retention.db import metadata
from services.retention.followups import models as followups
from services.retention.member_tiers import models as member_tiers
from services.retention.outcomes import models as outcomes
from services.retention.playbooks import models as playbooks
from services.retention.replica import models as replica
from services.retention.reports import models as reports
from services.retention.rules import models as rules
from services.retention.sequences import models as sequences
from services.retention.signals import models as signals
from services.retention.surveys import models as surveys
from services.retention.tasks import models as tasks
from services.retention.touches import models as touches
from services.retention.waits import models as waits
from services.retention.webhooks import models as webhooks

FEATURES = (
    alerts,
    campaigns,
    catalog,
    followups,
    member_tiers,
    outcomes,
    playbooks,
    replica,
    reports,
    rules,
    sequences,
    signals,
    surveys,
    tasks,
    touches,
    waits,
    webhooks,
)

__all__ = ["FEATURES", "metadata"]
