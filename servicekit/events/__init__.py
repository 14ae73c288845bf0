"""CloudEvents envelope, versioned event contracts and the registry that maps types to contracts."""

from servicekit.events.envelope import CloudEvent, EventData, Received
from servicekit.events.registry import REGISTRY, EventRegistry

__all__ = ["REGISTRY", "CloudEvent", "EventData", "EventRegistry", "Received"]
