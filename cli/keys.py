"""The first line of each row key in a file, in bounded memory: the import's duplicate-key check.

A key (a customer's external_ref, an interaction's external_id, a status's customer) is kept as an 8-byte
digest with the line that carried it first. Up to ``in_memory`` keys live in a dict (about 100 bytes
each); past that they are moved, all at once, to an SQLite table in a temporary file (deleted when the
import ends) and later keys are looked up there, so a file of any size needs the memory of at most
``in_memory`` keys plus SQLite's page cache. The temporary file goes where TMPDIR points (about 40 bytes
of disk per key).
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from pathlib import Path

IN_MEMORY = 500_000  # keys held in memory before they move to disk (~50 MB)
CACHE_KIB = 16 * 1024  # SQLite's page cache once the keys are on disk


def digest(field: str, value: object) -> int:
    """The key's 64-bit digest (as an int: smaller in a dict than bytes or text)."""
    return int.from_bytes(hashlib.blake2b(f"{field}\0{value}".encode(), digest_size=8).digest(), "big", signed=True)


class FirstLines:
    """``claim(key, line)`` answers the line that carried ``key`` first (``line`` itself when new)."""

    def __init__(self, in_memory: int = IN_MEMORY) -> None:
        self.in_memory = max(1, in_memory)
        self.recent: dict[int, int] = {}
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._db: sqlite3.Connection | None = None
        self.on_disk = 0

    def claim(self, key: int, line: int) -> int:
        first = self.recent.get(key)
        if first is not None:
            return first
        if self._db is not None:
            found = self._db.execute("SELECT line FROM keys WHERE key = ?", (key,)).fetchone()
            if found is not None:
                return int(found[0])
        self.recent[key] = line
        if len(self.recent) >= self.in_memory:
            self._spill()
        return line

    def __len__(self) -> int:
        return self.on_disk + len(self.recent)

    def _spill(self) -> None:
        if self._db is None:
            self._dir = tempfile.TemporaryDirectory(prefix="crm-import-keys-")
            self._db = sqlite3.connect(Path(self._dir.name) / "keys.sqlite", isolation_level=None)
            # A scratch file: nothing to recover after a crash (a resumed import reads the keys again).
            self._db.executescript(
                f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-{CACHE_KIB};"
                "CREATE TABLE keys (key INTEGER PRIMARY KEY, line INTEGER NOT NULL);"
            )
        self._db.execute("BEGIN")
        # In key order: the B-tree's pages are filled one after another rather than revisited per key.
        self._db.executemany("INSERT INTO keys (key, line) VALUES (?, ?)", sorted(self.recent.items()))
        self._db.execute("COMMIT")
        self.on_disk += len(self.recent)
        self.recent = {}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
