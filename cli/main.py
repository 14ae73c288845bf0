"""crm: the operator command line of the customer-retention platform.

    crm import customers FILE            customers from CSV, JSON Lines or Parquet (see docs/onboarding.md)
    crm import interactions FILE         interactions (history), idempotent by external_id
    crm import statuses FILE             status changes (churned with reason and date, won back)
    crm import cdnow [FILE]              the CDNOW sample: customers cdnow-<id> and their purchases
    crm generate subscriptions OUT_DIR   a subscription data set with a known churn mechanism
    crm timeline CUSTOMER_ID             a customer's interactions, newest first
    crm alerts [--status open]           churn alerts

Talks to the gateway (--gateway or CRM_GATEWAY_URL, default http://127.0.0.1:8000), with --token or
CRM_API_TOKEN sent as a bearer token if given. Exit codes: 0 done, 1 some rows were rejected,
2 the command could not run (bad file, gateway unreachable or refusing), 130 interrupted (run the same
command again to resume from its checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from cli import datasets, generate
from cli.client import Gateway, GatewayError, ImportSummary, import_rows
from cli.importer import Importer, ImportError_, Outcome, Settings
from cli.keys import IN_MEMORY
from cli.mapping import MappingError, build, load_mapping_file, parse_flags
from cli.rows import (
    Row,
    cdnow_customers,
    cdnow_interaction,
    cdnow_ref,
    parse_cdnow,
)
from cli.sources import SourceError, open_source
from cli.terminal import clean

DEFAULT_GATEWAY = "http://127.0.0.1:8000"
OK, REJECTED, FAILED, INTERRUPTED = 0, 1, 2, 130
IMPORT_KINDS = {
    "customers": "customers: name (required), kind, email, phone, external_ref, segment, owner, status, "
    "churned_at, churn_reason, churn_note, tags (a|b), attributes.<name>",
    "interactions": "interactions: customer_id or customer_ref (the customer's external_ref), type (required), "
    "occurred_at, amount, currency, quantity, order_id, severity, category, rating, sentiment, survey, score, "
    "text, external_id",
    "statuses": "status changes: customer_id or customer_ref, status (required), reason, churned_at, note",
}
MAX_LISTED = 50


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gateway",
        default=os.environ.get("CRM_GATEWAY_URL", DEFAULT_GATEWAY),
        help="gateway URL (env CRM_GATEWAY_URL; default %(default)s)",
    )
    parser.add_argument("--token", default=os.environ.get("CRM_API_TOKEN"), help="API token (env CRM_API_TOKEN)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)

    imports = commands.add_parser("import", help="bulk imports").add_subparsers(dest="what", required=True)
    for what, help_text in IMPORT_KINDS.items():
        sub = imports.add_parser(what, help=help_text, description=help_text)
        sub.add_argument("file", type=Path, help="CSV, JSON Lines (.jsonl) or Parquet")
        sub.add_argument("--format", choices=("csv", "jsonl", "parquet"), help="default: from the file name")
        sub.add_argument("--encoding", default="utf-8", help="text files' encoding (default %(default)s)")
        sub.add_argument("--delimiter", help="CSV cell separator (default , or tab for .tsv)")
        sub.add_argument("--mapping", type=Path, help="YAML or JSON file: {field: column} (attributes.<name> too)")
        sub.add_argument(
            "--map", action="append", default=[], metavar="FIELD=COLUMN", help="one field's column, or =constant"
        )
        sub.add_argument("--dry-run", action="store_true", help="check every row and report; send nothing")
        sub.add_argument("--chunk-size", type=int, default=500, help="rows per request (default %(default)s)")
        sub.add_argument("--concurrency", type=int, default=4, help="batches in flight at once (default %(default)s)")
        sub.add_argument("--checkpoint", type=Path, help="default: FILE.<kind>.checkpoint.json next to the file")
        sub.add_argument("--rejects", type=Path, help="default: <name>.rejects.<ext> next to the file")
        sub.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
        sub.add_argument("--max-wait", type=float, default=60.0, help="longest wait before a retry, s (default 60)")
        sub.add_argument(
            "--keys-in-memory",
            type=int,
            default=IN_MEMORY,
            help="row keys the duplicate check holds in memory before it moves them to a temporary file "
            "(default %(default)s)",
        )
    cdnow = imports.add_parser("cdnow", help="the CDNOW sample transaction log (fetched if FILE is omitted)")
    cdnow.add_argument("file", type=Path, nargs="?")
    cdnow.add_argument("--chunk-size", type=int, default=500, help="rows per request (default %(default)s)")

    timeline = commands.add_parser("timeline", help="a customer's interactions, newest first")
    timeline.add_argument("customer_id")
    timeline.add_argument("--type", action="append", help="only this type (repeatable)")
    timeline.add_argument("--since", help="occurred at or after (ISO date or time)")
    timeline.add_argument("--until", help="occurred before (ISO date or time)")
    timeline.add_argument("--limit", type=int, default=50)
    timeline.add_argument("--json", action="store_true", help="print the raw JSON")

    alerts = commands.add_parser("alerts", help="churn alerts")
    alerts.add_argument("--status", default=None, help="e.g. open, acknowledged, snoozed, resolved")
    alerts.add_argument("--customer-id")
    alerts.add_argument("--limit", type=int, default=50)
    alerts.add_argument("--json", action="store_true", help="print the raw JSON")

    generate.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, gateway: Gateway | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "concurrency", 1) < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return FAILED
    if getattr(args, "keys_in_memory", 1) < 1:
        print("error: --keys-in-memory must be at least 1", file=sys.stderr)
        return FAILED
    if getattr(args, "chunk_size", 1) < 1:
        print("error: --chunk-size must be at least 1", file=sys.stderr)
        return FAILED
    if args.command == "generate":
        return generate.run(args)
    own = gateway is None
    gateway = gateway or Gateway(args.gateway, token=args.token, timeout_s=args.timeout)
    try:
        if args.command == "import":
            return _import(gateway, args)
        if args.command == "timeline":
            return _timeline(gateway, args)
        return _alerts(gateway, args)
    except GatewayError as exc:
        # The message quotes the server's problem document: its title, detail and errors.
        print(f"error: {clean(exc)}", file=sys.stderr)
        return FAILED
    except (OSError, UnicodeDecodeError, datasets.DatasetUnavailable, SourceError, MappingError, ImportError_) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    finally:
        if own:
            gateway.close()


# ---- imports --------------------------------------------------------------------------------------


def _import(gateway: Gateway, args: argparse.Namespace) -> int:
    if args.what == "cdnow":
        return _import_cdnow(gateway, args)
    # Everything that can be checked before sending is: the file's header, the mapping, the checkpoint.
    source = open_source(args.file, args.format, encoding=args.encoding, delimiter=args.delimiter)
    given = load_mapping_file(args.mapping) if args.mapping else {}
    given.update(parse_flags(args.map))
    try:
        mapping, unused = build(args.what, source.columns, given)
    except MappingError as exc:
        raise MappingError(f"{args.file.name}: {exc}") from None
    if unused:
        print(f"warning: columns not imported (map them to import them): {', '.join(unused)}", file=sys.stderr)
    if args.what == "customers" and "external_ref" not in mapping.columns:
        print(
            "warning: no external_ref column: a customer sent just before an interruption may be created twice "
            "when the import resumes",
            file=sys.stderr,
        )
    gateway.max_wait_s = args.max_wait
    gateway.retries = max(gateway.retries, 8)
    settings = Settings(
        args.what,
        chunk_size=args.chunk_size,
        concurrency=args.concurrency,
        dry_run=args.dry_run,
        checkpoint=args.checkpoint,
        rejects=args.rejects,
        restart=args.restart,
        keys_in_memory=args.keys_in_memory,
    )
    importer = Importer(source, mapping, settings, gateway=None if args.dry_run else gateway)
    if importer.checkpoint_path.exists() and not args.restart and not args.dry_run:
        print(f"resuming from {importer.checkpoint_path}", file=sys.stderr)
    try:
        outcome = importer.run()
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: acknowledged batches are recorded in {importer.checkpoint_path}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return INTERRUPTED
    return import_report(args.what, outcome, importer.rejects_path, dry_run=args.dry_run)


def import_report(what: str, outcome: Outcome, rejects: Path, *, dry_run: bool, stream: TextIO | None = None) -> int:
    stream = stream or sys.stdout
    if dry_run:
        print(f"{what}: {outcome.created} valid, {outcome.rejected} rejected (dry run: nothing sent)", file=stream)
    else:
        print(
            f"{what}: {outcome.created} created, {outcome.existing} already there, {outcome.rejected} rejected",
            file=stream,
        )
    if outcome.resumed_from:
        print(f"  resumed after line {outcome.resumed_from}", file=stream)
    if outcome.retried_rows:
        print(f"  {outcome.retried_rows} row(s) sent again after a retryable rejection", file=stream)
    for message in outcome.listed:
        print(f"  {clean(message)}", file=stream)
    if outcome.rejected > len(outcome.listed):
        print(f"  ... and {outcome.rejected - len(outcome.listed)} more", file=stream)
    if outcome.rejected:
        print(f"  rejected rows with their reasons (_error): {rejects}", file=stream)
    return REJECTED if outcome.rejected else OK


def _import_cdnow(gateway: Gateway, args: argparse.Namespace) -> int:
    path = args.file or datasets.cdnow_sample()
    with Path(path).open(encoding="ascii") as stream:
        purchases, unreadable = parse_cdnow(stream)
    customer_rows = cdnow_customers(purchases)
    customers = import_rows(
        gateway, "/customers/bulk", customer_rows, label="importing CDNOW customers", chunk_size=args.chunk_size
    )
    status = report("customers", customers)
    # The customer ids of the file, by the line that introduced them.
    ids = {row.body["external_ref"]: customers.ids.get(row.line) for row in customer_rows}
    rows: list[Row] = []
    rejected = list(unreadable)
    for purchase in purchases:
        customer_id = ids.get(cdnow_ref(purchase.customer))
        if customer_id is None:
            rejected.append((purchase.line, f"customer {cdnow_ref(purchase.customer)} was not imported"))
        else:
            rows.append(cdnow_interaction(purchase, customer_id))
    purchases_summary = import_rows(
        gateway, "/interactions/bulk", rows, label="importing CDNOW purchases", chunk_size=args.chunk_size
    )
    purchases_summary.rejected.extend(rejected)
    return max(status, report("purchases", purchases_summary))


def report(what: str, summary: ImportSummary, stream: TextIO | None = None) -> int:
    """Print the summary (rejected rows by line number) and return the exit code."""
    stream = stream or sys.stdout
    print(
        f"{what}: {summary.created} created, {summary.existing} already there, {len(summary.rejected)} rejected"
        + (f" ({summary.row_retries} sent again after a retryable rejection)" if summary.row_retries else ""),
        file=stream,
    )
    rejected = sorted(summary.rejected)
    for line, reason in rejected[:MAX_LISTED]:
        print(f"  line {line}: {clean(reason)}", file=stream)
    if len(rejected) > MAX_LISTED:
        print(f"  ... and {len(rejected) - MAX_LISTED} more rejected rows", file=stream)
    return REJECTED if rejected else OK


# ---- reading ----------------------------------------------------------------------------------------


def _table(rows: list[list[str]], header: list[str]) -> str:
    # Every cell is cleaned here, so no server text reaches the terminal raw whichever column it is in.
    rows = [[clean(c) for c in r] for r in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _text(value: Any, width: int = 50) -> str:
    if value is None:
        return ""
    text = clean(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _timeline(gateway: Gateway, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit, "since": args.since, "until": args.until, "type": args.type}
    page = gateway.get_json(f"/customers/{args.customer_id}/interactions", params)
    if args.json:
        print(json.dumps(page, indent=2, ensure_ascii=True))  # control characters stay \u escapes
        return OK
    rows = [
        [
            _text(i.get("occurred_at")),
            _text(i.get("type")),
            _text(i.get("channel")),
            f"{i['amount']} {i.get('currency') or ''}".strip() if i.get("amount") is not None else "",
            _text(" ".join(x for x in (i.get("severity"), i.get("complaint_status")) if x)),
            _text(i.get("text") or i.get("category")),
        ]
        for i in page["items"]
    ]
    print(_table(rows, ["occurred_at", "type", "channel", "amount", "severity/status", "text"]))
    print(f"{len(rows)} of {clean(page['total'])} interaction(s)", file=sys.stderr)
    return OK


def _alerts(gateway: Gateway, args: argparse.Namespace) -> int:
    params = {"status": args.status, "customer_id": args.customer_id, "limit": args.limit}
    page = gateway.get_json("/alerts", params)
    if args.json:
        print(json.dumps(page, indent=2, ensure_ascii=True))  # control characters stay \u escapes
        return OK
    items = page["items"] if isinstance(page, dict) else page
    rows = [
        [
            _text(a.get("id"), 36),
            _text(a.get("customer_id"), 36),
            _text(a.get("reason")),
            _text(a.get("severity")),
            _text(a.get("status")),
            "" if a.get("churn_risk") is None else f"{float(a['churn_risk']):.2f}",
            "" if a.get("value_at_risk") is None else f"{float(a['value_at_risk']):.2f}",
            _text(a.get("owner")),
        ]
        for a in items
    ]
    print(_table(rows, ["id", "customer", "reason", "severity", "status", "risk", "value_at_risk", "owner"]))
    total = page.get("total", len(items)) if isinstance(page, dict) else len(items)
    print(f"{len(rows)} of {clean(total)} alert(s)", file=sys.stderr)
    return OK
