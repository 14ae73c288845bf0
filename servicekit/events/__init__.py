"""CloudEvents envelope, versioned event contracts and the registry that maps types to contracts."""

from contracts.registry import REGISTRY, EventRegistry
from servicekit.events.envelope import CloudEvent, EventData, Received

__all__ = ["REGISTRY", "CloudEvent", "EventData", "EventRegistry", "Received"]
