"""The environment variables the settings classes read, as Markdown: ``python -m runner.settings_doc``.

docs/configuration.md's tables are this output, between the ``settings:begin``/``settings:end``
markers (``--write docs/configuration.md`` refreshes them; a unit test checks they are current). The meaning of
each variable is the comment above or beside its field, so the settings classes stay the one source.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import json
import re
import textwrap
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from runner.launcher import SERVICES
from servicekit.auth import InternalAuthSettings
from servicekit.metrics_route import MetricsSettings
from servicekit.settings import KafkaSettings, PlatformSettings, ServiceSettings
from servicekit.tracing import TracingSettings

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
# Not configuration: a service's name is its identity (consumer group, event source); the nested
# settings are read under their own prefixes (KAFKA_, CRM_) and listed there.
SKIPPED = {"name", "kafka", "platform"}
SECRET = re.compile(r"secret|pepper|token")


def field_comments(cls: type) -> dict[str, str]:
    """field -> the comment block directly above it and the comment at the end of its line, joined."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    found: dict[str, str] = {}
    above: list[str] = []
    for number, line in enumerate(source.splitlines(), start=1):
        text = line.strip()
        if text.startswith("#") and number in comments:  # (not a line of a docstring)
            if not comments[number].startswith("----"):  # section headers name a group, not a field
                above.append(comments[number])
            continue
        match = re.match(r"(\w+)\s*:", text)
        if match and line.startswith("    ") and not line.startswith("     "):
            parts = [" ".join(above), comments.get(number)]
            found[match.group(1)] = " ".join(_sentence(part) for part in parts if part)
        above = []
    return found


def _sentence(comment: str) -> str:
    comment = comment[0].upper() + comment[1:]
    return comment if comment.endswith(".") else comment + "."


def _json_item(value: Any) -> Any:
    """A list item json cannot write itself: a model (e.g. a tier definition) as its JSON form."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _default(name: str, value: Any) -> str:
    if isinstance(value, str) and value and SECRET.search(name):
        return "a development value (set your own)"
    if isinstance(value, BaseModel):  # a group of numbers: where they are defined says more than a JSON line
        return f"the defaults of `{type(value).__module__}.{type(value).__name__}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict | list | tuple):
        return f"`{json.dumps(value, default=_json_item)}`"
    return f"`{value}`" if value != "" else "(empty)"


def rows(cls: type[BaseSettings], prefix: str, *, own_only: bool = False) -> Iterator[tuple[str, str, str]]:
    """(variable, default, meaning) of each field cls reads (only those it declares itself, if own_only)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if issubclass(klass, BaseSettings) and klass is not BaseSettings:
            comments.update({name: text for name, text in field_comments(klass).items() if text})
    declared = cls.__annotations__ if own_only else cls.model_fields
    for name, field in cls.model_fields.items():
        if name in SKIPPED or name not in declared:
            continue
        default = field.get_default(call_default_factory=True)
        yield f"{prefix}{name}".upper(), _default(name, default), comments.get(name, "")


def _table(rows_: Iterable[tuple[str, str, str]]) -> list[str]:
    def cell(text: str) -> str:  # Markdown would take <name> for an HTML tag and | for a column
        return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")

    return ["| variable | default | meaning |", "|---|---|---|", *(f"| `{n}` | {d} | {cell(m)} |" for n, d, m in rows_)]


def markdown() -> str:
    from gateway.settings import GatewaySettings  # the gateway is a process of the platform like the services

    classes = {name: importlib.import_module(f"services.{name}.main").SPEC.settings_cls for name in SERVICES}
    ports = " / ".join(str(cls.model_fields["port"].default) for cls in classes.values())
    prefixes = ", ".join(f"`{name.upper()}_`" for name in classes)
    common = [(n, f"`{ports}`" if n == "<NAME>_PORT" else d, m) for n, d, m in rows(ServiceSettings, "<NAME>_")]
    out = [f"**Every service** (`<NAME>_` = {prefixes}):", "", *_table(common)]
    for name, cls in classes.items():
        own = [r for r in rows(cls, f"{name.upper()}_", own_only=True) if r[0] != f"{name.upper()}_PORT"]
        if own:
            out += ["", f"**{name} service**:", "", *_table(own)]
    out += ["", "**Gateway**:", "", *_table(rows(GatewaySettings, "GATEWAY_"))]
    shared = [*rows(KafkaSettings, "KAFKA_"), *rows(PlatformSettings, "CRM_"), *rows(InternalAuthSettings, "CRM_")]
    shared += rows(MetricsSettings, "CRM_")
    shared += rows(TracingSettings, "OTEL_")
    out += ["", "**Every process** (services and gateway):", "", *_table(shared)]
    return "\n".join(out) + "\n"


def replace_section(document: str, generated: str) -> str:
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n" + generated + "\n" + document[end:]  # a blank line ends the last table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m runner.settings_doc", description="Print the configuration tables."
    )
    parser.add_argument("--write", type=Path, help=f"replace the text between {BEGIN} and {END} in this file")
    args = parser.parse_args(argv)
    if args.write is None:
        print(markdown(), end="")
        return
    args.write.write_text(replace_section(args.write.read_text(), markdown()))


if __name__ == "__main__":
    main()
