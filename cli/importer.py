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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.client import Gateway
from cli.import_state import (
    Checkpoint,
    ImportError_,
    Outcome,
    Pending,
    RowResult,
    default_paths,
    mapping_digest,
)
from cli.keys import IN_MEMORY, FirstLines, digest
from cli.mapping import KEY_FIELDS, FieldMap, apply, describe
from cli.progress import RateProgress
from cli.rejects import Rejects
from cli.senders import PATHS, Directory, InFlight, Sender, StatusSender, bulk_sender
from cli.sources import Record, Source, file_identity, records

__all__ = ["Checkpoint", "ImportError_", "Importer", "Outcome", "Settings"]

ROW_RETRIES = 5  # tries of a row the platform called retryable before it is reported rejected


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
    keys_in_memory: int = IN_MEMORY  # row keys held in memory before the duplicate check moves them to disk
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
        self.keys = FirstLines(settings.keys_in_memory)  # a row key -> the line that used it first

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
            self.keys.close()
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
        # References are resolved here, in one thread (the batch's new ones in one request); the senders'
        # threads then only look them up.
        if self.directory is not None:
            self.directory.prepare(p.body["customer_ref"] for p in batch if "customer_ref" in p.body)
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
            first = self.keys.claim(digest(name, value), line)
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
