"""A dependency-free progress indicator on stderr: a live percentage on a terminal, a line per 10% otherwise."""

from __future__ import annotations

import sys
from typing import TextIO


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
