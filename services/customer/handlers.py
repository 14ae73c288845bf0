"""The customer service's event handlers, one map assembled from its features' handlers modules:
crm.erasure.v1 -> erasure receipts; erp.consents.v1 -> consent changes; erp.loyalty.v1 -> points ledger;
crm.scoring.v1 score.updated -> the customer's scored value tier.

Handlers never commit; the consumer commits with the inbox row.
"""

from servicekit.inbox import Handlers
from servicekit.inbox.consumer import BatchHook
from services.customer.consent.handlers import HANDLERS as CONSENT
from services.customer.erasure.handlers import HANDLERS as ERASURE
from services.customer.points.handlers import HANDLERS as POINTS
from services.customer.scores.handlers import HANDLERS as SCORES
from services.customer.scores.handlers import apply_batch_scores

HANDLERS: Handlers = {**ERASURE, **CONSENT, **POINTS, **SCORES}
# Before a batch's handlers: its score.updated written in one statement run.
BEFORE_BATCH: BatchHook = apply_batch_scores
