"""Idempotent event consumption: inbox de-duplication, batched transactions, dead-lettering."""

from servicekit.inbox.consumer import BatchHook, EventConsumer, Handler, Handlers, PoisonEvent

__all__ = ["BatchHook", "EventConsumer", "Handler", "Handlers", "PoisonEvent"]
