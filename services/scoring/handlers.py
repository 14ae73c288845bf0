"""The scoring service's event handlers and batch preload, assembled from its features' handlers modules:
every customer and interaction event feeds a customer's features and rescores it (scores.handlers)."""

from servicekit.inbox import BatchHook, Handlers
from services.scoring.scores.handlers import BEFORE_BATCH as SCORES_BEFORE_BATCH
from services.scoring.scores.handlers import HANDLERS as SCORES

HANDLERS: Handlers = {**SCORES}
BEFORE_BATCH: BatchHook = SCORES_BEFORE_BATCH
