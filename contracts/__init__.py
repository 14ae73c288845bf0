"""Versioned event contracts, one module per producing service, all registered in servicekit.events.REGISTRY.

Contracts change additively; a breaking change is a new event type (e.g. ``customer.created.v2``).
"""

from contracts import customer, erasure, erp, interaction, retention, scoring, topics
from contracts.registry import REGISTRY

for _module in (customer, interaction, scoring, retention, erasure, erp):
    REGISTRY.register(*_module.MODELS)
REGISTRY.register(*erp.CONSENT_MODELS)
REGISTRY.register(*erp.LOYALTY_MODELS)

__all__ = ["customer", "erasure", "interaction", "retention", "scoring", "topics"]
