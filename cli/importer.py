"""`crm import customers|interactions|statuses FILE`: a streaming, resumable import.

The file is read record by record (never whole), each record mapped to the platform's fields and checked
by the CLI's copy of the services' rules (cli.schema). Good rows are sent in batches of --chunk-size;
batch boundaries depend only on the file, the mapping and the chunk size, so a resumed import sends the
same batches. Up to --concurrency batches are in flight at once; their answers are taken in file order,
so after each acknowledged batch a checkpoint is written atomically (temp file, fsync, rename) that
covers only batches acknowledged without a gap: the file's fingerprint, the last line covered, the
counts and the size of the rejects file. A batch in flight at an interruption is sent again on resume.
Run the same command again after Ctrl-C or a crash and it skips what the checkpoint covers.

Nothing is imported twice: each batch carries an Idempotency-Key derived from the file's fingerprint and
its line range, and each row its own key (a customer's external_ref; an interaction's external_id,
derived from the file and line when the file has none), so a batch the platform stored just before an
interruption is reported `existing` when sent again. Statuses set to the value they already have are
reported `existing` too (the platform answers `unchanged`).

Rejected rows (unreadable, invalid, duplicated in the file, or refused by the platform) are written to a
rejects file in the input's format with the reason (`_error`), ready to be fixed and imported again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from cli.client import IDEMPOTENCY_KEYS, RETRIES, Gateway, GatewayError, _describe, _error_text, retry_wait_s
from cli.mapping import KEY_FIELDS, FieldMap, apply, describe
from cli.progress import RateProgress
from cli.sources import Record, Source, file_identity, records

CHECKPOINT_VERSION = 1
ROW_RETRIES = 5  # tries of a row the platform called retryable before it is reported rejected
PATHS = {"customers": "/customers/bulk", "interactions": "/interactions/bulk"}
STATUS_BULK = "/customers/status/bulk"
FALLBACK_CONCURRENCY = 8  # status changes in flight at once where there is no bulk route
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


# ---- the rejects file -------------------------------------------------------------------------------------


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


# ---- customer references ------------------------------------------------------------------------------------


class Directory:
    """external_ref -> customer id, read from GET /customers page by page the first time a file needs it."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.ids: dict[str, str] | None = None

    def load(self) -> dict[str, str]:
        ids: dict[str, str] = {}
        cursor: str | None = None
        while True:
            page = self.gateway.get_json("/customers", {"limit": 200, "cursor": cursor, "sort": "created_at"})
            for item in page["items"]:
                if item.get("external_ref"):
                    ids[item["external_ref"]] = item["id"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        self.ids = ids
        return ids

    def resolve(self, ref: str) -> str | None:
        ids = self.ids if self.ids is not None else self.load()
        return ids.get(ref)


# ---- senders: a batch of bodies in, one result per row out -----------------------------------------------


Sender = Callable[[list[dict[str, Any]], str], list[RowResult]]


def _results(report: dict[str, Any], count: int) -> list[RowResult]:
    results = [RowResult("rejected", "no result for this row")] * count
    for item in report.get("rows") or report.get("items") or []:
        index = int(item["index"])
        status = str(item.get("status", "rejected"))
        if status == "rejected":
            reason = "; ".join(_error_text(e) for e in item.get("errors") or []) or "rejected"
            results[index] = RowResult("rejected", reason, bool(item.get("retryable")))
        else:
            # `existing` (a known key) and `unchanged` (a status it already had): nothing written.
            results[index] = RowResult("created" if status in ("created", "changed") else "existing")
    return results


def bulk_sender(gateway: Gateway, path: str) -> Sender:
    def send(bodies: list[dict[str, Any]], key: str) -> list[RowResult]:
        # A gateway timeout (504) means the service may still finish the batch: it is sent again only when
        # every row carries its own key, so a second delivery reports them `existing`.
        keyed = all(IDEMPOTENCY_KEYS & body.keys() for body in bodies)
        for attempt in range(1, RETRIES + 2):
            response = gateway.request("POST", path, json={"rows": bodies}, headers={"Idempotency-Key": key})
            if response.status_code != 504 or not keyed or attempt > RETRIES:
                break
            gateway.sleep(retry_wait_s(attempt, None, backoff_s=gateway.retry_backoff_s * 4, cap_s=gateway.max_wait_s))
        if response.status_code != 200:
            raise GatewayError(f"POST {path} refused a batch: {_describe(response)}")
        return _results(response.json(), len(bodies))

    return send


class StatusSender:
    """POST /customers/status/bulk ({"rows": [{customer_id, status, reason, churned_at, note}]}: `changed`,
    `unchanged` or `rejected` per row); where the platform has no such route (404), one POST
    /customers/{id}/status per row. A customer_ref is resolved to its id by the CLI first."""

    def __init__(self, gateway: Gateway, directory: Directory) -> None:
        self.gateway = gateway
        self.directory = directory
        self.bulk = True

    def __call__(self, bodies: list[dict[str, Any]], key: str) -> list[RowResult]:
        changes: list[dict[str, Any] | None] = [self._change(body) for body in bodies]
        results: list[RowResult | None] = [
            None if change is not None else RowResult("rejected", _unknown_ref(body))
            for body, change in zip(bodies, changes, strict=True)
        ]
        known = [i for i, change in enumerate(changes) if change is not None]
        if known and self.bulk:
            rows = [changes[i] for i in known]
            response = self.gateway.request("POST", STATUS_BULK, json={"rows": rows}, headers={"Idempotency-Key": key})
            if response.status_code in (404, 405):
                self.bulk = False
            elif response.status_code == 200:
                for i, result in zip(known, _results(response.json(), len(known)), strict=True):
                    results[i] = result
                known = []
            else:
                raise GatewayError(f"POST {STATUS_BULK} refused a batch: {_describe(response)}")
        if known:
            # One request per row: a few at a time, as a bulk request would be processed.
            with ThreadPoolExecutor(max_workers=FALLBACK_CONCURRENCY) as pool:
                for i, result in zip(known, pool.map(self._one, [changes[i] for i in known]), strict=True):
                    results[i] = result
        return [r if r is not None else RowResult("rejected", "no result") for r in results]

    def _change(self, body: dict[str, Any]) -> dict[str, Any] | None:
        customer_id = body.get("customer_id")
        if customer_id is None:
            customer_id = self.directory.resolve(body["customer_ref"])
            if customer_id is None:
                return None
        change = {k: body[k] for k in ("status", "reason", "churned_at", "note") if k in body}
        return {"customer_id": customer_id, **change}

    def _one(self, change: dict[str, Any] | None) -> RowResult:
        assert change is not None
        body = {k: v for k, v in change.items() if k != "customer_id"}
        response = self.gateway.request("POST", f"/customers/{change['customer_id']}/status", json=body)
        if response.status_code in (200, 201):
            return RowResult("created")
        return RowResult("rejected", _describe(response), retryable=response.status_code in (429, 503, 504))


def _unknown_ref(body: dict[str, Any]) -> str:
    return f"customer_ref: no customer with external_ref {body.get('customer_ref')!r}"


# ---- batches in flight -------------------------------------------------------------------------------------


Answer = tuple[list[RowResult], int]  # one result per row, and how many rows were sent again


class InFlight:
    """Up to `limit` batches sent at once, answered oldest first.

    The importer takes answers only through oldest(), in the order the batches were submitted, so its
    checkpoint never moves past a batch that is still unanswered, even when later ones finished first.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._pool: ThreadPoolExecutor | None = None
        self._queue: deque[tuple[list[Pending], int, Future[Answer]]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def full(self) -> bool:
        return len(self._queue) >= self.limit

    def submit(self, batch: list[Pending], through: int, send: Callable[[], Answer]) -> None:
        assert not self.full()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.limit, thread_name_prefix="crm-import")
        self._queue.append((batch, through, self._pool.submit(send)))

    def oldest(self) -> tuple[list[Pending], int, Answer]:
        """The oldest batch, its last line and its answer (waiting for it); its error is raised here."""
        batch, through, future = self._queue.popleft()
        return batch, through, future.result()

    def close(self) -> None:
        """Drop batches not started yet and wait for those being sent (an interruption resumes from the
        checkpoint, and their rows' keys make a second delivery harmless)."""
        for _, _, future in self._queue:
            future.cancel()
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# ---- the import --------------------------------------------------------------------------------------------


@dataclass
class Settings:
    kind: str
    chunk_size: int = 500
    dry_run: bool = False
    checkpoint: Path | None = None
    rejects: Path | None = None
    restart: bool = False
    row_retries: int = ROW_RETRIES
    concurrency: int = 1  # batches in flight at once; answers are still taken in file order
    # Called after each acknowledged batch with the number of batches done so far (tests interrupt here).
    after_batch: Callable[[int], None] | None = None


class Importer:
    def __init__(
        self,
        source: Source,
        mapping: FieldMap,
        settings: Settings,
        *,
        gateway: Gateway | None = None,
        sender: Sender | None = None,
        progress: RateProgress | None = None,
    ) -> None:
        self.source = source
        self.mapping = mapping
        self.settings = settings
        self.gateway = gateway
        self.identity = file_identity(source.path)
        self.digest = mapping_digest(mapping, settings.chunk_size)
        default_checkpoint, default_rejects = default_paths(source.path, settings.kind, source.format)
        self.checkpoint_path = settings.checkpoint or default_checkpoint
        self.rejects_path = settings.rejects or default_rejects
        self.directory = Directory(gateway) if gateway is not None else None
        self.sender = sender or self._default_sender()
        self.progress = progress or RateProgress(
            f"{'checking' if settings.dry_run else 'importing'} {settings.kind}", source
        )
        self.keys: dict[str, int] = {}  # a row key's digest -> the line that used it first

    def _default_sender(self) -> Sender | None:
        if self.settings.dry_run or self.gateway is None:
            return None
        if self.settings.kind == "statuses":
            assert self.directory is not None
            return StatusSender(self.gateway, self.directory)
        return bulk_sender(self.gateway, PATHS[self.settings.kind])

    # The checkpoint to resume from, or a fresh one.
    def _start(self) -> Checkpoint:
        fresh = Checkpoint(str(self.source.path), self.identity, self.settings.kind, self.digest)
        if self.settings.dry_run or self.settings.restart:
            return fresh
        found = Checkpoint.load(self.checkpoint_path)
        if found is None:
            return fresh
        if found.identity != self.identity or found.kind != self.settings.kind:
            raise ImportError_(
                f"checkpoint {self.checkpoint_path} belongs to another file or kind ({found.file}, {found.kind}); "
                "remove it or pass --restart"
            )
        if found.mapping != self.digest:
            raise ImportError_(
                f"checkpoint {self.checkpoint_path} was written with another mapping or --chunk-size; "
                "use the same ones to resume, or pass --restart"
            )
        return found

    def run(self) -> Outcome:
        checkpoint = self._start()
        outcome = Outcome(
            created=checkpoint.created,
            existing=checkpoint.existing,
            rejected=checkpoint.rejected,
            resumed_from=checkpoint.through_line,
        )
        rejects = Rejects(self.rejects_path, self.source, keep_bytes=checkpoint.rejects_bytes)
        rejects.prepare()
        batch: list[Pending] = []
        window = InFlight(max(1, self.settings.concurrency))
        try:
            for record in records(self.source):
                resumed = record.line <= checkpoint.through_line
                pending = self._check(record, outcome, rejects, write=not resumed)
                if resumed:
                    outcome.skipped_lines += 1
                    self.progress.advance(1)
                    continue
                if pending is not None:
                    batch.append(pending)
                else:
                    self.progress.advance(1)  # a rejected row is done; a sent one counts once acknowledged
                if len(batch) >= self.settings.chunk_size:
                    self._submit(window, batch, record.line, checkpoint, outcome, rejects)
                    batch = []
            if batch:
                self._submit(window, batch, batch[-1].line, checkpoint, outcome, rejects)
            while window:
                self._acknowledge(window, checkpoint, outcome, rejects)
            rejects.finish()
        finally:
            window.close()
            rejects.close()
            self.progress.close()
        if not self.settings.dry_run and self.checkpoint_path.exists():
            self.checkpoint_path.unlink()  # done: a new run imports afresh (keyed rows come back `existing`)
        return outcome

    def _submit(
        self,
        window: InFlight,
        batch: list[Pending],
        through: int,
        checkpoint: Checkpoint,
        outcome: Outcome,
        rejects: Rejects,
    ) -> None:
        """Send a batch, first taking the oldest answers while the window is full."""
        if self.settings.dry_run or self.sender is None:
            outcome.created += len(batch)  # would be sent
            self.progress.advance(len(batch))
            return
        while window.full():
            self._acknowledge(window, checkpoint, outcome, rejects)
        # References are resolved here, in one thread: the directory is read once, then only looked up.
        if self.directory is not None and self.directory.ids is None and any("customer_ref" in p.body for p in batch):
            self.directory.load()
        bodies = [self._resolved(p.body) for p in batch]
        window.submit(batch, through, lambda: self._send(batch, bodies))

    def _acknowledge(self, window: InFlight, checkpoint: Checkpoint, outcome: Outcome, rejects: Rejects) -> None:
        """Record the oldest batch in flight: its rows, then a checkpoint through its last line."""
        batch, through, (results, retried) = window.oldest()
        outcome.retried_rows += retried
        self._record(batch, results, through, checkpoint, outcome, rejects)
        self.progress.advance(len(batch))

    def _check(self, record: Record, outcome: Outcome, rejects: Rejects, *, write: bool) -> Pending | None:
        """The record's body, or None after rejecting it (the rejection is counted and written only
        when `write`: a resumed import already did so for the lines its checkpoint covers)."""
        unit = self.source.unit()
        problem: str | None = record.problem
        body: dict[str, Any] | None = None
        if problem is None:
            # A key is claimed by the first line that carries it, valid or not: fixing that line later
            # must not merge it into another customer.
            duplicate = self._duplicate(record.line, record.values, unit)
            body, problems = apply(self.mapping, record.values)
            if problems:
                problem = describe(record.line, problems, unit)
            elif duplicate:
                problem = duplicate
        if problem is not None or body is None:
            if write:
                outcome.reject(problem or f"{unit} {record.line}: unreadable")
                rejects.write(record.values, problem or "unreadable")
            return None
        if self.settings.kind == "interactions" and "external_id" not in body:
            # A key from the file and line: sending this row again (after a resume) cannot store it twice.
            body["external_id"] = f"import-{self.identity[:16]}-{record.line}"
        return Pending(record.line, body, record.values)

    def _duplicate(self, line: int, values: dict[str, Any], unit: str) -> str | None:
        for name in KEY_FIELDS[self.settings.kind]:
            column = self.mapping.columns.get(name)
            raw = values.get(column) if column else None
            value = raw.strip() if isinstance(raw, str) else raw
            if value is None or value == "":
                continue
            digest = hashlib.blake2b(f"{name}\0{value}".encode(), digest_size=8).hexdigest()
            first = self.keys.setdefault(digest, line)
            if first != line:
                named = f"column {column!r}" if column == name else f"column {column!r} ({name})"
                return f"{unit} {line}, {named}: {value!r} is already on {unit} {first} of this file"
        return None

    def _record(
        self,
        batch: list[Pending],
        results: list[RowResult],
        through: int,
        checkpoint: Checkpoint,
        outcome: Outcome,
        rejects: Rejects,
    ) -> None:
        unit = self.source.unit()
        for pending, result in zip(batch, results, strict=True):
            if result.status == "rejected":
                message = f"{unit} {pending.line}: {result.reason}"
                outcome.reject(message)
                rejects.write(pending.values, result.reason)
            elif result.status == "created":
                outcome.created += 1
            else:
                outcome.existing += 1
        checkpoint.through_line = through
        checkpoint.batches += 1
        checkpoint.created, checkpoint.existing, checkpoint.rejected = (
            outcome.created,
            outcome.existing,
            outcome.rejected,
        )
        checkpoint.rejects_bytes = rejects.size()
        checkpoint.save(self.checkpoint_path)
        if self.settings.after_batch is not None:
            self.settings.after_batch(checkpoint.batches)

    def _send(self, batch: list[Pending], bodies: list[dict[str, Any] | None]) -> tuple[list[RowResult], int]:
        """One result per row, and how many rows were sent again: rows the platform calls retryable are
        sent again (alone) with a backoff. Runs in a worker thread: it changes nothing shared."""
        assert self.sender is not None
        key = f"crm-import-{self.identity[:16]}-{self.settings.kind}-{batch[0].line}-{batch[-1].line}"
        retried = 0
        results: list[RowResult] = [RowResult("rejected", "")] * len(batch)
        waiting = list(range(len(batch)))
        for attempt in range(1, self.settings.row_retries + 1):
            sendable = [i for i in waiting if bodies[i] is not None]
            for i in waiting:
                if bodies[i] is None:
                    ref = batch[i].body.get("customer_ref")
                    results[i] = RowResult("rejected", f"customer_ref: no customer with external_ref {ref!r}")
            if not sendable:
                break
            suffix = "" if attempt == 1 else f"-retry{attempt}"
            answers = self.sender([body for i in sendable if (body := bodies[i]) is not None], key + suffix)
            waiting = []
            for i, answer in zip(sendable, answers, strict=True):
                results[i] = answer
                if answer.status == "rejected" and answer.retryable and attempt < self.settings.row_retries:
                    waiting.append(i)
            if not waiting:
                break
            retried += len(waiting)
            if self.gateway is not None:
                self.gateway.sleep(min(self.gateway.max_wait_s, self.gateway.retry_backoff_s * 2**attempt))
        return results, retried

    def _resolved(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """An interaction's customer_ref replaced by the customer's id (None: no such customer)."""
        if self.settings.kind != "interactions" or "customer_ref" not in body:
            return body
        assert self.directory is not None
        customer_id = self.directory.resolve(body["customer_ref"])
        if customer_id is None:
            return None
        return {**{k: v for k, v in body.items() if k != "customer_ref"}, "customer_id": customer_id}
