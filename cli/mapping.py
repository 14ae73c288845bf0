"""From a file's columns to the platform's fields. Pure: no network, no files but the mapping's own.

A mapping names, for each platform field, the column that holds it (or a constant, written ``=value``)::

    # customers.yaml
    name: Customer Name
    external_ref: CustomerID
    attributes.plan: Plan              # any attribute: attributes.<name>
    attributes.tenure_months: Tenure
    segment: "=retail"                 # the same value on every row

A field left out of the mapping is read from the column of the same name when there is one, and every
``attr.<name>`` or ``attributes.<name>`` column becomes that attribute. ``--map FIELD=COLUMN`` flags
override the file. Nothing is sent before the mapping fits the file's header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cli.schema import FIELDS, MODELS, problems_of

ATTRIBUTE = "attributes."
COLUMN_PREFIXES = ("attr.", "attributes.")
# Each group needs one of its fields mapped.
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "customers": (("name",),),
    "interactions": (("customer_id", "customer_ref"), ("type",)),
    "statuses": (("customer_id", "customer_ref"), ("status",)),
}
# The field that identifies a row: a second row with the same value in one file is a mistake.
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "customers": ("external_ref",),
    "interactions": ("external_id",),
    "statuses": ("customer_id", "customer_ref"),
}
TAG_SEPARATORS = re.compile(r"[|;]")
IGNORED_COLUMNS = frozenset({"_error"})  # the reason column of a rejects file


class MappingError(Exception):
    """The mapping does not fit the file or names unknown fields; the message says which."""


@dataclass(frozen=True)
class FieldMap:
    kind: str
    # platform field -> source column, or a constant ("=value" in the mapping, stored as ("=", value))
    columns: dict[str, str]
    constants: dict[str, str] = field(default_factory=dict)

    def column_of(self, target: str) -> str:
        """The column a field comes from, for messages ("" for a constant)."""
        return self.columns.get(target, "")


def load_mapping_file(path: Path) -> dict[str, str]:
    """A YAML or JSON object {field: column}; a top-level "columns" key may hold it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"mapping {path}: cannot read it: {exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise MappingError(f"mapping {path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("columns"), dict):
        data = data["columns"]
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise MappingError(f"mapping {path}: expected an object of field: column (both text)")
    return dict(data)


def parse_flags(flags: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for flag in flags:
        target, sep, column = flag.partition("=")
        if not sep or not target.strip():
            raise MappingError(f"--map {flag!r}: expected FIELD=COLUMN (e.g. --map attributes.plan=Plan)")
        found[target.strip()] = column
    return found


def build(kind: str, header: Iterable[str], given: dict[str, str] | None = None) -> tuple[FieldMap, list[str]]:
    """The mapping for a file with this header, and the columns it leaves unused (to warn about).

    Raises MappingError naming every problem: unknown fields, columns missing from the header,
    required fields with no column."""
    header = list(header)
    known = FIELDS[kind]
    columns: dict[str, str] = {}
    constants: dict[str, str] = {}
    problems: list[str] = []
    for target, source in (given or {}).items():
        if target not in known and not (kind == "customers" and target.startswith(ATTRIBUTE) and len(target) > 11):
            hint = ", attributes.<name>" if kind == "customers" else ""
            problems.append(f"unknown field {target!r} (fields of {kind}: {', '.join(known)}{hint})")
        elif source.startswith("="):
            constants[target] = source[1:]
        elif source not in header:
            problems.append(f"field {target}: column {source!r} is not in the file (columns: {', '.join(header)})")
        else:
            columns[target] = source
    for column in header:
        if column in known and column not in columns and column not in constants:
            columns[column] = column
        elif kind == "customers" and column.startswith(COLUMN_PREFIXES):
            target = ATTRIBUTE + column.split(".", 1)[1]
            if target not in columns and target not in constants:
                columns[target] = column
    for group in REQUIRED[kind]:
        if not any(g in columns or g in constants or g in (given or {}) for g in group):
            names = " or ".join(group)
            problems.append(
                f"line 1: required column {names!r} is missing (columns: {', '.join(header)}); "
                f"map one with --map {group[0]}=COLUMN"
            )
    if problems:
        raise MappingError("; ".join(problems))
    used = set(columns.values())
    unused = [c for c in header if c not in used and c not in IGNORED_COLUMNS]
    return FieldMap(kind, columns, constants), unused


def _typed(value: str) -> Any:
    """An attribute read from text: integers, decimals and booleans as such, anything else as text."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"[+-]?\d{1,18}", value):
        return int(value)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?", value):
        return float(value)
    return value


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


@dataclass(frozen=True, slots=True)
class Problem:
    column: str  # the file's column ("" when the problem spans fields)
    field: str  # the platform's field
    message: str


def apply(mapping: FieldMap, values: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Problem]]:
    """A record's request body, validated by the CLI's copy of the services' rules, or its problems."""
    raw: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    sources = {
        **{t: ("=", v) for t, v in mapping.constants.items()},
        **{t: ("", c) for t, c in mapping.columns.items()},
    }
    for target, (kind, source) in sources.items():
        value = source if kind == "=" else values.get(source)
        if not _given(value):
            continue
        if isinstance(value, str):
            value = value.strip()
        if target.startswith(ATTRIBUTE):
            attributes[target[len(ATTRIBUTE) :]] = _typed(value) if isinstance(value, str) else value
        elif target == "tags" and isinstance(value, str):
            raw["tags"] = [t.strip() for t in TAG_SEPARATORS.split(value) if t.strip()]
        else:
            raw[target] = value
    if attributes:
        raw["attributes"] = attributes
    try:
        model = MODELS[mapping.kind].model_validate(raw)
    except ValidationError as exc:
        return None, [_problem(mapping, f, m) for f, m in problems_of(exc)]
    return model.model_dump(mode="json", exclude_unset=True, exclude_none=True), []


def _problem(mapping: FieldMap, field_name: str, message: str) -> Problem:
    column = mapping.columns.get(field_name, "")
    return Problem(column, field_name, message)


def describe(line: int, problems: Iterable[Problem], unit: str = "line") -> str:
    """One message naming the line and each column: line 12, column 'Signup' (churned_at): ..."""
    parts = []
    for p in problems:
        if p.column and p.column != p.field:
            parts.append(f", column {p.column!r} ({p.field}): {p.message}")
        elif p.column:
            parts.append(f", column {p.column!r}: {p.message}")
        elif p.field:
            parts.append(f": {p.field}: {p.message}")
        else:
            parts.append(f": {p.message}")
    return f"{unit} {line}" + ";".join(parts)
