"""crm: the operator command line of the customer-retention platform.

    crm import customers FILE.csv        bulk-import customers (progress on stderr, rejected rows listed)
    crm import interactions FILE.csv     bulk-import interactions (history), idempotent by external_id
    crm import cdnow [FILE]              the CDNOW sample: customers cdnow-<id> and their purchases
    crm timeline CUSTOMER_ID             a customer's interactions, newest first
    crm alerts [--status open]           churn alerts

Talks to the gateway (--gateway or CRM_GATEWAY_URL, default http://127.0.0.1:8000), with --token or
CRM_API_TOKEN sent as a bearer token if given. Exit codes: 0 done, 1 some rows were rejected,
2 the command could not run (bad file, gateway unreachable or refusing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from cli import datasets
from cli.client import Gateway, GatewayError, ImportSummary, import_rows
from cli.rows import (
    Row,
    cdnow_customers,
    cdnow_interaction,
    cdnow_ref,
    customers_from_csv,
    interactions_from_csv,
    parse_cdnow,
)
from cli.terminal import clean

DEFAULT_GATEWAY = "http://127.0.0.1:8000"
OK, REJECTED, FAILED = 0, 1, 2
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
    for what, help_text in (
        (
            "customers",
            "customers from CSV: name, kind, email, phone, external_ref, segment, owner, status, "
            "tags (a|b), attr.<name>",
        ),
        ("interactions", "interactions from CSV: customer_id, type, occurred_at, amount, currency, ..."),
    ):
        sub = imports.add_parser(what, help=help_text, description=help_text)
        sub.add_argument("file", type=Path)
        sub.add_argument("--chunk-size", type=int, default=500, help="rows per request (default %(default)s)")
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
    return parser


def main(argv: Sequence[str] | None = None, *, gateway: Gateway | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "chunk_size", 1) < 1:
        print("error: --chunk-size must be at least 1", file=sys.stderr)
        return FAILED
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
    except (OSError, UnicodeDecodeError, datasets.DatasetUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    finally:
        if own:
            gateway.close()


# ---- imports --------------------------------------------------------------------------------------


def _import(gateway: Gateway, args: argparse.Namespace) -> int:
    if args.what == "cdnow":
        return _import_cdnow(gateway, args)
    with args.file.open(newline="", encoding="utf-8-sig") as stream:
        parsed = customers_from_csv(stream) if args.what == "customers" else interactions_from_csv(stream)
    if parsed.unknown_columns:
        print(f"warning: columns the service may ignore: {', '.join(parsed.unknown_columns)}", file=sys.stderr)
    summary = import_rows(
        gateway, f"/{args.what}/bulk", parsed.rows, label=f"importing {args.what}", chunk_size=args.chunk_size
    )
    summary.rejected.extend(parsed.rejected)
    return report(args.what, summary)


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
        f"{what}: {summary.created} created, {summary.existing} already there, {len(summary.rejected)} rejected",
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
