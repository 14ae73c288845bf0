"""Idempotent event consumption: inbox de-duplication, batched transactions, dead-lettering."""

from servicekit.inbox.consumer import EventConsumer, Handler, Handlers, PoisonEvent

__all__ = ["EventConsumer", "Handler", "Handlers", "PoisonEvent"]
