"""Idempotent event consumption: inbox de-duplication, batched transactions, dead-lettering."""

from servicekit.inbox.consumer import EventConsumer
from servicekit.inbox.delivery import (
    BatchHook,
    Claim,
    ClaimingHook,
    Handler,
    Handlers,
    PoisonEvent,
    batch_customer_ids,
    claimed_events,
)

__all__ = [
    "BatchHook",
    "Claim",
    "ClaimingHook",
    "EventConsumer",
    "Handler",
    "Handlers",
    "PoisonEvent",
    "batch_customer_ids",
    "claimed_events",
]
