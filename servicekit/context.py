"""The correlation id of the work at hand: set from X-Request-ID at the edge, carried inside events."""

from __future__ import annotations

from contextvars import ContextVar

from servicekit.ids import uuid4_hex

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_request_id() -> str:
    return uuid4_hex()


def current_correlation_id() -> str | None:
    return correlation_id.get()
