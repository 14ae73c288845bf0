"""The rejects file of an import: the rows it could not store, in the input's format, with the reason."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import IO, Any

from cli.sources import Source


class Rejects:
    """Rejected rows in the input's format plus `_error`: CSV with an extra column, JSON Lines with an extra
    key, Parquet with the input's schema plus an `_error` string column. A Parquet file cannot be appended to
    row by row, so a Parquet input's rejects are kept in a JSON Lines staging file next to it while the
    import runs (what a checkpoint covers, like the others) and written as Parquet when the import ends."""

    def __init__(self, path: Path, source: Source, *, keep_bytes: int = 0) -> None:
        self.path = path
        self.source = source
        self.csv = source.format == "csv"
        self.parquet = source.format == "parquet"
        self.stream_path = path.with_name(f"{path.name}.partial.jsonl") if self.parquet else path
        self.columns = [c for c in source.columns if c != "_error"] + ["_error"]
        self.delimiter = source.delimiter
        self.count = 0
        self._stream: IO[str] | None = None
        self._keep = keep_bytes

    def _open(self) -> IO[str]:
        if self._stream is None:
            exists = self.stream_path.exists() and self._keep > 0
            stream = self.stream_path.open("r+" if exists else "w", encoding="utf-8", newline="")
            if exists:
                stream.truncate(self._keep)
                stream.seek(self._keep)
            elif self.csv:
                csv.writer(stream, delimiter=self.delimiter).writerow(self.columns)
            self._stream = stream
        return self._stream

    def prepare(self) -> None:
        """Cut the file back to what the checkpoint covers (or start it afresh)."""
        if self._keep == 0:
            for path in {self.path, self.stream_path}:
                if path.exists():
                    path.unlink()
        else:
            self._open()

    def write(self, values: dict[str, Any], reason: str) -> None:
        stream = self._open()
        if self.csv:
            row = [_cell(values.get(c)) for c in self.columns[:-1]] + [reason]
            csv.writer(stream, delimiter=self.delimiter).writerow(row)
        else:
            stream.write(
                json.dumps({**{k: v for k, v in values.items() if k != "_error"}, "_error": reason}, default=str)
            )
            stream.write("\n")
        self.count += 1

    def size(self) -> int:
        if self._stream is None:
            return self._keep if self.stream_path.exists() else 0
        self._stream.flush()
        os.fsync(self._stream.fileno())
        return self._stream.tell()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def finish(self) -> None:
        """At the end of a whole import: a Parquet input's staged rejects become the Parquet rejects file."""
        self.close()
        if self.parquet and self.stream_path.exists():
            write_parquet_rejects(self.stream_path, self.path, self.source.path)
            self.stream_path.unlink()


def write_parquet_rejects(staged: Path, target: Path, original: Path) -> None:
    """JSON Lines rejects (as the importer read the rows: dates and decimals as text) to Parquet with the
    original file's schema plus `_error`; a column whose values no longer fit its type stays text."""
    import pyarrow as pa  # imported here: only Parquet imports pay for it
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pq.read_schema(original)
    rows = [json.loads(line) for line in staged.read_text(encoding="utf-8").splitlines() if line.strip()]
    columns: dict[str, Any] = {}
    for name in [n for n in schema.names if n != "_error"]:
        values = [row.get(name) for row in rows]
        wanted = schema.field(name).type
        try:
            columns[name] = pa.array(values, type=wanted)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            text = pa.array([None if v is None else str(v) for v in values], type=pa.string())
            try:
                columns[name] = pc.cast(text, wanted)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                columns[name] = text
    columns["_error"] = pa.array([str(row.get("_error", "")) for row in rows], type=pa.string())
    tmp = target.with_name(f"{target.name}.tmp")
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, target)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
