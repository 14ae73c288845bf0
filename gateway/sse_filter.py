"""Pure: an alert event stream narrowed to the alerts a caller owns (agents: their own; managers: the team's).

The retention service's stream (text/event-stream) carries every alert change with its ``owner`` in the
JSON data. For an owner-scoped caller the gateway relays only the events whose alert that caller's owners
hold, and comments (keep-alives) as they are; an event without a readable owner is left out. The owner
copied onto an alert can lag a reassignment, so the relay (gateway.proxy) also checks the customer's
current owner before an event goes out. Event ids still rise, so a client resuming with Last-Event-ID
misses none of its own events.
"""

from __future__ import annotations

import json

SEPARATOR = b"\n\n"


class OwnerStreamFilter:
    def __init__(self, owners: frozenset[str]) -> None:
        self.owners = owners
        self._pending = b""

    def feed(self, chunk: bytes) -> list[tuple[bytes, str | None]]:
        """The complete events of what has arrived so far that this caller may see: (bytes to relay, the
        customer id whose current owner still has to be checked, or None for a comment)."""
        self._pending += chunk
        *frames, self._pending = self._pending.split(SEPARATOR)
        out = []
        for frame in frames:
            verdict = self.visible(frame)
            if verdict is not False:
                out.append((frame + SEPARATOR, verdict if isinstance(verdict, str) else None))
        return out

    def visible(self, frame: bytes) -> str | bool:
        """False: not for this caller; True: a comment; a customer id: an event of one of its alerts."""
        lines = frame.split(b"\n")
        data = [line[5:].lstrip(b" ") for line in lines if line.startswith(b"data:")]
        if not data:
            # Comments and bare fields (keep-alives, retry hints) tell nothing about any alert.
            return all(line.startswith(b":") or line.startswith(b"retry:") or not line for line in lines)
        try:
            payload = json.loads(b"\n".join(data))
        except ValueError:
            return False
        if not isinstance(payload, dict):
            return False
        owner, customer_id = payload.get("owner"), payload.get("customer_id")
        if not isinstance(owner, str) or owner not in self.owners or not isinstance(customer_id, str):
            return False
        return customer_id
