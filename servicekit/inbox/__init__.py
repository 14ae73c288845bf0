"""Idempotent event consumption: inbox de-duplication, batched transactions, dead-lettering."""

from servicekit.inbox.consumer import EventConsumer
from servicekit.inbox.delivery import BatchHook, Handler, Handlers, PoisonEvent, batch_customer_ids

__all__ = ["BatchHook", "EventConsumer", "Handler", "Handlers", "PoisonEvent", "batch_customer_ids"]
