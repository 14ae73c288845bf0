"""What an import keeps between batches and runs: its checkpoint, its running counts, a row on its way and
the platform's answer for it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cli.mapping import FieldMap

CHECKPOINT_VERSION = 1
MAX_LISTED = 50


class ImportError_(Exception):
    """The import cannot go on (a checkpoint for another file, a batch refused as a whole)."""


@dataclass
class Checkpoint:
    file: str  # the input's path as given, for the operator
    identity: str  # file_identity of the input
    kind: str
    mapping: str  # digest of the mapping and chunk size: a different one would batch differently
    through_line: int = 0  # every record up to this line is done (sent and acknowledged, or rejected)
    batches: int = 0
    created: int = 0
    existing: int = 0
    rejected: int = 0
    rejects_bytes: int = 0  # the rejects file's size at this point
    version: int = CHECKPOINT_VERSION

    def save(self, path: Path) -> None:
        """Atomically: a reader sees the previous checkpoint or this one, never half of one."""
        temp = path.with_name(path.name + ".tmp")
        with temp.open("w", encoding="utf-8") as stream:
            json.dump(asdict(self), stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data) if data.get("version") == CHECKPOINT_VERSION else None
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ImportError_(f"checkpoint {path} is unreadable ({exc}); remove it or pass --restart") from None


@dataclass
class Outcome:
    created: int = 0
    existing: int = 0
    rejected: int = 0
    retried_rows: int = 0
    skipped_lines: int = 0  # lines a resumed import did not send again
    listed: list[str] = field(default_factory=list)  # the first rejection messages, for the terminal
    resumed_from: int = 0

    def reject(self, message: str) -> None:
        self.rejected += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(message)


@dataclass
class Pending:
    line: int
    body: dict[str, Any]
    values: dict[str, Any]


@dataclass
class RowResult:
    status: str  # created | existing | rejected
    reason: str = ""
    retryable: bool = False


def mapping_digest(mapping: FieldMap, chunk_size: int) -> str:
    text = json.dumps([mapping.kind, mapping.columns, mapping.constants, chunk_size], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_paths(path: Path, kind: str, fmt: str) -> tuple[Path, Path]:
    """Where the checkpoint and the rejects file go unless given: next to the input."""
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}[fmt]
    return (
        path.with_name(f"{path.name}.{kind}.checkpoint.json"),
        path.with_name(f"{path.stem}.rejects{suffix}"),
    )
