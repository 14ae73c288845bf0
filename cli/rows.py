"""Turning files into request bodies. Pure: no network; every row keeps the line it came from."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

from cli.schema import FIELDS

# Columns the services know (the fields of cli.schema's row models); others are still sent (the service
# decides) but the operator is warned. Customers take attributes as one "attributes" column too; this
# reader of interactions names the customer by id only (customer_ref is resolved by `crm import`).
CUSTOMER_COLUMNS = frozenset(FIELDS["customers"]) | {"attributes"}
INTERACTION_COLUMNS = frozenset(FIELDS["interactions"]) - {"customer_ref"}
# Where csv.DictReader puts the cells beyond the header's (no column name holds a NUL).
SURPLUS = "\0surplus"
ATTRIBUTE_PREFIXES = ("attr.", "attributes.")
TAG_SEPARATORS = re.compile(r"[|;]")


@dataclass(frozen=True, slots=True)
class Row:
    """One record to import and where it came from (the line number in the file)."""

    line: int
    body: dict[str, Any]


@dataclass
class ParsedFile:
    rows: list[Row] = field(default_factory=list)
    # Problems found before sending anything, by line: (line, message).
    rejected: list[tuple[int, str]] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)


def _typed(value: str) -> Any:
    """An attribute's value: integers, decimals and booleans as such, anything else as text."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?", value):
        return float(value)
    return value


def _records(stream: TextIO) -> Iterator[tuple[int, dict[str, str], list[str]]]:
    reader = csv.DictReader(stream, restkey=SURPLUS)
    if reader.fieldnames is None:
        return
    for record in reader:
        # DictReader puts surplus cells under the restkey; line_num is the line the record ended on.
        extra = record.pop(SURPLUS, None)
        problems = [f"{len(extra)} cell(s) more than the header has"] if extra else []
        yield reader.line_num, record, problems


def _columns(stream_header: Iterable[str], known: frozenset[str], prefixes: tuple[str, ...] = ()) -> list[str]:
    return [c for c in stream_header if c and c not in known and not c.startswith(prefixes)]


def customers_from_csv(stream: TextIO) -> ParsedFile:
    """Customers: one column per field; tags separated by | or ;, attributes as attr.<name> columns."""
    parsed = ParsedFile()
    header_seen = False
    for line, record, problems in _records(stream):
        if not header_seen:
            parsed.unknown_columns = _columns(record, CUSTOMER_COLUMNS, ATTRIBUTE_PREFIXES)
            header_seen = True
        if problems:
            parsed.rejected.append((line, "; ".join(problems)))
            continue
        body: dict[str, Any] = {}
        attributes: dict[str, Any] = {}
        for column, raw in record.items():
            value = (raw or "").strip()
            if not value:
                continue  # an empty cell means "not given", never ""
            prefix = next((p for p in ATTRIBUTE_PREFIXES if column.startswith(p)), None)
            if prefix is not None:
                attributes[column[len(prefix) :]] = _typed(value)
            elif column == "tags":
                body["tags"] = [t.strip() for t in TAG_SEPARATORS.split(value) if t.strip()]
            else:
                body[column] = value
        if attributes:
            body["attributes"] = attributes
        parsed.rows.append(Row(line, body))
    return parsed


def interactions_from_csv(stream: TextIO) -> ParsedFile:
    """Interactions: one column per field (customer_id, type, occurred_at, amount, ...); empty = not given."""
    parsed = ParsedFile()
    header_seen = False
    for line, record, problems in _records(stream):
        if not header_seen:
            parsed.unknown_columns = _columns(record, INTERACTION_COLUMNS)
            header_seen = True
        if problems:
            parsed.rejected.append((line, "; ".join(problems)))
            continue
        body = {column: raw.strip() for column, raw in record.items() if raw and raw.strip()}
        parsed.rows.append(Row(line, body))
    return parsed


# ---- CDNOW ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CdnowPurchase:
    line: int
    customer: str  # the customer id of the file, without leading zeros
    day: datetime
    quantity: int
    amount: Decimal


def cdnow_ref(customer: str) -> str:
    return f"cdnow-{customer}"


def parse_cdnow(lines: Iterable[str]) -> tuple[list[CdnowPurchase], list[tuple[int, str]]]:
    """CDNOW_sample.txt: whitespace-separated customer id, sample id, date YYYYMMDD, quantity, amount."""
    purchases: list[CdnowPurchase] = []
    rejected: list[tuple[int, str]] = []
    for number, text in enumerate(lines, start=1):
        cells = text.split()
        if not cells:
            continue
        if len(cells) != 5:
            rejected.append((number, f"expected 5 columns, found {len(cells)}"))
            continue
        customer, _sample, date, quantity, amount = cells
        try:
            day = datetime.strptime(date, "%Y%m%d").replace(tzinfo=UTC)
            purchases.append(
                CdnowPurchase(number, str(int(customer)), day, int(quantity), Decimal(amount).quantize(Decimal("0.01")))
            )
        except (ValueError, InvalidOperation) as exc:
            rejected.append((number, f"unreadable value: {exc}"))
    return purchases, rejected


def cdnow_customers(purchases: Iterable[CdnowPurchase]) -> list[Row]:
    """One customer per CDNOW customer id, first appearance first; the line is its first purchase."""
    first: dict[str, int] = {}
    for purchase in purchases:
        first.setdefault(purchase.customer, purchase.line)
    return [
        Row(
            line,
            {
                "name": f"CDNOW customer {customer}",
                "kind": "person",
                "external_ref": cdnow_ref(customer),
                "segment": "cdnow",
                "status": "active",
            },
        )
        for customer, line in first.items()
    ]


def cdnow_interaction(purchase: CdnowPurchase, customer_id: str) -> Row:
    return Row(
        purchase.line,
        {
            "customer_id": customer_id,
            "type": "purchase",
            "channel": "web",
            "initiated_by": "customer",
            "occurred_at": purchase.day.isoformat().replace("+00:00", "Z"),
            "quantity": purchase.quantity,
            "amount": str(purchase.amount),
            "currency": "USD",
            "external_id": f"cdnow-{purchase.line}",
        },
    )
