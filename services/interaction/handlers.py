"""The interaction service's event handlers, assembled from its features. Handlers never commit; the consumer
commits with the inbox row.

- crm.customer.v1 -> the local customer replica (replica/handlers.py), whose batches first prefetch the
  customers they need from the customer service (BEFORE_BATCH).
- crm.scoring.v1 score.updated -> the replica's scored value tier (replica/handlers.py).
- erp.orders.v1, erp.returns.v1, scm.shipments.v1 -> interactions, or parked (inbound/handlers.py).
- crm.retention.v1 survey.responded -> a survey interaction (surveys/handlers.py).
"""

from servicekit.inbox import Handlers
from servicekit.inbox.consumer import BatchHook
from services.interaction.inbound.handlers import HANDLERS as INBOUND
from services.interaction.replica.handlers import HANDLERS as REPLICA
from services.interaction.replica.handlers import prefetch_customers
from services.interaction.surveys.handlers import HANDLERS as SURVEYS

HANDLERS: Handlers = {**SURVEYS, **REPLICA, **INBOUND}

BEFORE_BATCH: BatchHook = prefetch_customers
