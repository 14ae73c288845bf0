"""Handing freed heap memory back to the operating system, paced: glibc's ``malloc_trim``.

Under ``PYTHONMALLOC=malloc`` (``CRM_CONSUMER_PYTHONMALLOC``, set by the launcher for consumer processes)
every Python object lives in glibc's heap, and what a burst of large batches freed stays in it, spread over
pages that also hold live objects, until ``malloc_trim`` hands the wholly free pages back (madvise). Under
Python's own allocator (pymalloc, the default) objects live in 256 KiB arenas that only go back when
wholly empty, so a trim returns only glibc's share (a few MiB). A consumer trims after a batch, at most
once per ``<NAME>_CONSUMER_MALLOC_TRIM_INTERVAL_S``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from functools import cache

log = logging.getLogger("servicekit.allocator")


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library is not glibc (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def trim_heap() -> bool:
    """Give the heap's wholly free pages back to the operating system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class TrimPacer:
    """Trims at most once per interval_s (0: never), first one interval after start; the clock is injectable."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last = clock()
        self.trims = 0

    def due(self) -> bool:
        return self.interval_s > 0 and self._clock() - self._last >= self.interval_s

    def after_batch(self, trim: Callable[[], bool] = trim_heap) -> bool:
        """Trim now if due; True when a trim ran."""
        if not self.due():
            return False
        self._last = self._clock()
        if not trim():
            self.interval_s = 0.0  # no glibc: stop asking
            log.info("malloc_trim is not available; consumer heap trimming off")
            return False
        self.trims += 1
        return True
