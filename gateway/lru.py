"""A bounded mapping for the gateway's per-process caches: the least recently used entries go first."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class LruDict(OrderedDict[str, Any]):
    """An OrderedDict that forgets its least recently used entries beyond ``size``.

    Unlike clearing a plain dict when it fills, the hot entries (the callers of the last seconds) stay,
    so a flood of unknown keys can neither grow memory nor flush every legitimate caller's entry at once.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)

    def fresh(self, key: str) -> Any:
        """The value, marked as recently used; None if absent."""
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value
