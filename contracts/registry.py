"""One registry of event contracts: type name -> model and topic. Every service imports it."""

from __future__ import annotations

from collections.abc import Iterator

from servicekit.events.envelope import CloudEvent, EventData, Received


class UnknownEventType(LookupError):
    pass


class EventRegistry:
    def __init__(self) -> None:
        self._by_type: dict[str, type[EventData]] = {}

    def register(self, *models: type[EventData]) -> None:
        for model in models:
            existing = self._by_type.get(model.event_type)
            if existing is not None and existing is not model:
                raise ValueError(f"event type {model.event_type!r} registered twice")
            self._by_type[model.event_type] = model

    def model(self, event_type: str) -> type[EventData]:
        try:
            return self._by_type[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def __contains__(self, event_type: str) -> bool:
        return event_type in self._by_type

    def __iter__(self) -> Iterator[type[EventData]]:
        return iter(self._by_type.values())

    def topics(self) -> list[str]:
        return sorted({model.topic for model in self._by_type.values()})

    def parse(self, envelope: CloudEvent) -> Received[EventData]:
        """Validate the envelope's data against its contract (raises pydantic.ValidationError)."""
        model = self.model(envelope.type)
        return Received(envelope=envelope, data=model.model_validate(envelope.data))


REGISTRY = EventRegistry()
