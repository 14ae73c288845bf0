"""Dependency-free progress on stderr: a live line on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._last_decile = -1

    def advance(self, count: int) -> None:
        self.done = min(self.done + count, self.total)
        percent = 100 if self.total == 0 else self.done * 100 // self.total
        if self.live:
            self.stream.write(f"\r{self.label}: {percent:3d}% ({self.done}/{self.total})")
            self.stream.flush()
        elif percent // 10 != self._last_decile:
            self._last_decile = percent // 10
            self.stream.write(f"{self.label}: {percent}% ({self.done}/{self.total})\n")

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


class RateProgress:
    """Rows done, rows/s and an ETA on stderr: live on a terminal, a line every `every_s` seconds otherwise.

    The ETA comes from how far into the file the reader is (bytes for CSV and JSON Lines, rows for
    Parquet), so no file is counted before it is imported."""

    def __init__(
        self,
        label: str,
        source: Any,
        stream: TextIO | None = None,
        *,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.source = source
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.clock = clock
        self.every_s = every_s if not self.live else 0.2
        self.started = clock()
        self.done = 0
        self._shown = self.started
        self._shown_done = -1

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        fraction = self.source.fraction_read if self.source is not None else None
        parts = [f"{self.label}: {self.done:,} rows", f"{rate:,.0f} rows/s"]
        if fraction:
            parts.insert(1, f"{fraction * 100:.0f}%")
            remaining = elapsed * (1 - fraction) / fraction
            parts.append(f"ETA {_duration(remaining)}")
        return ", ".join(parts)

    def advance(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if now - self._shown >= self.every_s:
            self._shown = now
            self._show()

    def _show(self) -> None:
        self._shown_done = self.done
        if self.live:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()
        else:
            self.stream.write(self.line() + "\n")

    def close(self) -> None:
        if self.done != self._shown_done:
            self._show()
        if self.live:
            self.stream.write("\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
