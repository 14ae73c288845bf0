"""Remember which default factories take the validated data, instead of asking inspect on every object.

SQLModel builds a table object (an Alert, a Task, a stored interaction) through `FieldInfo.get_default`,
and pydantic answers that by running `inspect.signature` on each field's default factory every time
(pydantic caches it for private attributes since pydantic#13376, not for fields). In the retention
consumer raising alerts that was a large share of its CPU (the profile is in
docs/performance/2026-12-02-report.md, "Load"). The answer depends only on the factory, so one look per
factory is enough. `install()` runs when servicekit is imported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pydantic._internal import _fields

_original: Callable[[Any], bool] = _fields.takes_validated_data_argument


@functools.lru_cache(maxsize=4096)
def _remembered(default_factory: Callable[..., Any]) -> bool:
    return _original(default_factory)


def takes_validated_data_argument(default_factory: Callable[..., Any]) -> bool:
    try:
        return _remembered(default_factory)
    except TypeError:  # an unhashable callable: ask each time, as pydantic does
        return _original(default_factory)


def install() -> None:
    _fields.takes_validated_data_argument = takes_validated_data_argument  # type: ignore[assignment]
