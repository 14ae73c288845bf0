"""Per-customer feature state and how each event changes it: the scoring service's pure core.

``state`` holds what the state is (the dataclass, its windows and the summary shown beside a score),
``events`` how each event changes it, ``storage`` its column values. The names below are the ones the
rest of the service uses (``features.record_interaction``, ``features.FeatureState``...).
"""

from services.scoring.scores.features.events import (
    churn_moment,
    complaint_overdue,
    complaint_updated,
    consent_changed,
    customer_erased,
    customer_status_changed,
    customer_upserted,
    record_interaction,
    survey_answered,
)
from services.scoring.scores.features.state import (
    ComplaintMark,
    FeatureState,
    PurchaseMark,
    complaints_between,
    days_between,
    spend_between,
    summary,
    utc,
)
from services.scoring.scores.features.storage import STATE_FIELDS, dump_state, load_state

__all__ = [
    "STATE_FIELDS",
    "ComplaintMark",
    "FeatureState",
    "PurchaseMark",
    "churn_moment",
    "complaint_overdue",
    "complaint_updated",
    "complaints_between",
    "consent_changed",
    "customer_erased",
    "customer_status_changed",
    "customer_upserted",
    "days_between",
    "dump_state",
    "load_state",
    "record_interaction",
    "spend_between",
    "summary",
    "survey_answered",
    "utc",
]
