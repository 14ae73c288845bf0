"""Reading import files as a stream of records: CSV, JSON Lines and Parquet, never the whole file at once.

Each record keeps where it came from (its line, or its row for Parquet) so every message can name it.
A line that cannot be decoded or parsed is a record with a problem, not the end of the import: it goes
to the rejects file like any other bad row. Only a file whose header cannot be read stops the import,
before anything is sent.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

FORMATS = ("csv", "jsonl", "parquet")
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
PARQUET_BATCH_ROWS = 2000
# Large enough for any legitimate row; a "line" longer than this is a broken file (e.g. binary data).
MAX_LINE_BYTES = 16 * 1024 * 1024


class SourceError(Exception):
    """The file cannot be imported at all (unreadable header, unknown format); nothing was sent."""


@dataclass(slots=True)
class Record:
    line: int  # first line of the record (CSV, JSON Lines) or its 1-based row number (Parquet)
    values: dict[str, Any]
    problem: str | None = None  # set when the record could not be read; values may then be partial


@dataclass
class Source:
    path: Path
    format: str
    encoding: str = "utf-8"
    delimiter: str = ","
    columns: list[str] = field(default_factory=list)
    total_rows: int | None = None  # known for Parquet only
    _bytes_read: int = 0

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def fraction_read(self) -> float | None:
        """How far into the file the reader is (0..1), for the progress estimate."""
        size = self.size
        return None if size == 0 else min(1.0, self._bytes_read / size)

    def unit(self) -> str:
        return "row" if self.format == "parquet" else "line"


def detect_format(path: Path, given: str | None = None) -> str:
    if given:
        if given not in FORMATS:
            raise SourceError(f"unknown format {given!r}: one of {', '.join(FORMATS)}")
        return given
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise SourceError(f"{path.name}: cannot tell the format from the name; pass --format {'|'.join(FORMATS)}")
    return found


def file_identity(path: Path) -> str:
    """A fingerprint of the file, cheap even for a huge one: its size, and hashes of its first and last MiB.
    A checkpoint only resumes the file it was written for."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as stream:
        digest.update(stream.read(1 << 20))
        if size > 2 << 20:
            stream.seek(-(1 << 20), os.SEEK_END)
            digest.update(stream.read(1 << 20))
    return digest.hexdigest()[:32]


def open_source(path: Path, fmt: str | None = None, *, encoding: str = "utf-8", delimiter: str | None = None) -> Source:
    """Open a file and read its header (CSV), first record (JSON Lines) or schema (Parquet)."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    found = detect_format(path, fmt)
    source = Source(path, found, encoding=encoding)
    if found == "csv":
        source.delimiter = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
        with path.open("rb") as stream:
            first = stream.readline(MAX_LINE_BYTES)
        try:
            text = first.decode(_python_encoding(encoding))
        except UnicodeDecodeError as exc:
            raise SourceError(_decode_message(1, first, exc, encoding)) from None
        header = next(csv.reader([text], delimiter=source.delimiter), [])
        if not any(cell.strip() for cell in header):
            raise SourceError(f"{path.name}: line 1: no header (the first line names the columns)")
        source.columns = [cell.strip() for cell in header]
        duplicates = sorted({c for c in source.columns if source.columns.count(c) > 1})
        if duplicates:
            raise SourceError(f"{path.name}: line 1: column(s) named twice: {', '.join(duplicates)}")
    elif found == "jsonl":
        for record in _jsonl(source, limit=1):
            if record.problem:
                raise SourceError(f"{path.name}: {record.problem}")
            source.columns = list(record.values)
    else:
        parquet = _parquet_file(path)
        source.columns = list(parquet.schema_arrow.names)
        source.total_rows = parquet.metadata.num_rows
    return source


def records(source: Source) -> Iterator[Record]:
    if source.format == "csv":
        return _csv(source)
    if source.format == "jsonl":
        return _jsonl(source)
    return _parquet(source)


# ---- CSV ----------------------------------------------------------------------------------------------


def _python_encoding(encoding: str) -> str:
    # A byte-order mark at the start is not part of the first column's name.
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _decode_message(line: int, raw: bytes, exc: UnicodeDecodeError, encoding: str) -> str:
    column = len(raw[: exc.start].decode(_python_encoding(encoding), errors="replace")) + 1
    return (
        f"line {line}, character {column}: byte 0x{raw[exc.start]:02x} is not valid {encoding}; "
        "pass --encoding (e.g. --encoding latin-1) if the file is in another encoding"
    )


def _csv(source: Source) -> Iterator[Record]:
    bad_lines: dict[int, str] = {}
    python_encoding = _python_encoding(source.encoding)

    def lines(stream: IO[bytes]) -> Iterator[str]:
        number = 0
        while True:
            raw = stream.readline(MAX_LINE_BYTES)
            if not raw:
                return
            number += 1
            source._bytes_read += len(raw)
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise SourceError(f"{source.path.name}: line {number} is longer than {MAX_LINE_BYTES} bytes")
            try:
                text = raw.decode(python_encoding if number == 1 else source.encoding)
            except UnicodeDecodeError as exc:
                bad_lines[number] = _decode_message(number, raw, exc, source.encoding)
                text = raw.decode(source.encoding, errors="replace")
            yield text

    with source.path.open("rb") as stream:
        reader = csv.reader(lines(stream), delimiter=source.delimiter)
        next(reader, None)  # the header, read by open_source
        width = len(source.columns)
        previous_end = reader.line_num
        for cells in reader:
            first, previous_end = previous_end + 1, reader.line_num
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line
            values = dict(zip(source.columns, cells, strict=False))
            problems = [bad_lines.pop(n) for n in range(first, previous_end + 1) if n in bad_lines]
            if problems:
                # Name the first cell that held an undecodable byte (shown as U+FFFD once replaced).
                column = next((c for c, v in values.items() if "\ufffd" in v), None)
                if column is not None:
                    problems[0] = problems[0].replace(", character", f", column {column!r}, character", 1)
            if len(cells) > width:
                problems.append(f"line {first}: {len(cells) - width} cell(s) more than the header's {width} columns")
            elif len(cells) < width:
                problems.append(f"line {first}: {len(cells)} cell(s) where the header has {width} columns")
            yield Record(first, values, "; ".join(problems) or None)


# ---- JSON Lines -----------------------------------------------------------------------------------------


def _skip_rest_of_line(stream: IO[bytes]) -> int:
    """Read past the end of the current line in bounded pieces; returns the bytes skipped."""
    skipped = 0
    while piece := stream.readline(MAX_LINE_BYTES):
        skipped += len(piece)
        if piece.endswith(b"\n"):
            break
    return skipped


def _jsonl(source: Source, limit: int | None = None) -> Iterator[Record]:
    yielded = 0
    with source.path.open("rb") as stream:
        for number, raw in enumerate(iter(lambda: stream.readline(MAX_LINE_BYTES), b""), start=1):
            source._bytes_read += len(raw)
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                # Skip the rest of the line (in bounded reads) so the next lines keep their numbers.
                source._bytes_read += _skip_rest_of_line(stream)
                lossy = raw[:200].decode(source.encoding, errors="replace")
                yield Record(number, {"_raw": lossy + "..."}, f"line {number} is longer than {MAX_LINE_BYTES} bytes")
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
                continue
            if not raw.strip():
                continue
            # A line that is not a JSON object keeps its text under "_raw", so the rejects file shows it.
            try:
                text = raw.decode(_python_encoding(source.encoding) if number == 1 else source.encoding)
            except UnicodeDecodeError as exc:
                lossy = raw.decode(source.encoding, errors="replace").rstrip("\r\n")
                yield Record(number, {"_raw": lossy}, _decode_message(number, raw, exc, source.encoding))
            else:
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    problem = f"line {number}, character {exc.colno}: not JSON: {exc.msg}"
                    yield Record(number, {"_raw": text.rstrip("\r\n")}, problem)
                else:
                    if isinstance(value, dict):
                        yield Record(number, value)
                    else:
                        problem = f"line {number}: a JSON object per line, found {type(value).__name__}"
                        yield Record(number, {"_raw": text.rstrip("\r\n")}, problem)
            yielded += 1
            if limit is not None and yielded >= limit:
                return


# ---- Parquet --------------------------------------------------------------------------------------------


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq  # imported here: only Parquet imports pay for it

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for a broken file
        raise SourceError(f"{path.name}: not a readable Parquet file: {exc}") from None


def _plain(value: Any) -> Any:
    """Parquet's typed values as the platform's JSON takes them."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _parquet(source: Source) -> Iterator[Record]:
    parquet = _parquet_file(source.path)
    number = 0
    size = source.size
    total = max(parquet.metadata.num_rows, 1)
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            number += 1
            source._bytes_read = size * number // total
            yield Record(number, {k: _plain(v) for k, v in row.items()})
