"""Request checks every route needs and no model can express: no NUL characters anywhere in the input.

PostgreSQL text cannot hold U+0000 (asyncpg refuses to send it), so a NUL in a path parameter, a query
parameter or a JSON string would otherwise reach the database and fail there as a 500. One dependency,
installed on every service app and on the gateway's own routes, answers 422 naming each such field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from servicekit.problems import Problem, field_error

NUL = "\x00"
# JSON can carry a NUL only escaped (a raw one is invalid JSON); bodies without this byte sequence
# need no walk, which keeps large bulk imports cheap.
_JSON_NUL = b"\\u0000"
NUL_MESSAGE = "must not contain the NUL character (\\u0000)"


def _shown(name: str) -> str:
    return name.replace(NUL, "\\u0000")


def _join(location: str, key: str | int) -> str:
    # The same notation as validation errors: items[3].email
    if isinstance(key, int):
        return f"{location}[{key}]"
    return f"{location}.{_shown(key)}" if location else _shown(key)


def nul_fields(document: Any, location: str = "") -> Iterator[str]:
    """Pure: the location of every string (or object key) in a JSON document that contains a NUL."""
    stack: list[tuple[str, Any]] = [(location, document)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if NUL in node:
                yield where or "body"
        elif isinstance(node, dict):
            for key, value in node.items():
                inner = _join(where, key)
                if isinstance(key, str) and NUL in key:
                    yield inner
                stack.append((inner, value))
        elif isinstance(node, list):
            stack.extend((_join(where, i), item) for i, item in enumerate(node))


def parameter_nul_fields(path_params: dict[str, Any], query_items: list[tuple[str, str]]) -> list[str]:
    """Pure: ``path.<name>`` / ``query.<name>`` for every parameter holding a NUL (headers cannot: the
    HTTP server refuses control characters in them)."""
    fields = [f"path.{name}" for name, value in path_params.items() if isinstance(value, str) and NUL in value]
    fields += [f"query.{_shown(name)}" for name, value in query_items if NUL in name or NUL in value]
    return list(dict.fromkeys(fields))


async def reject_nul(request: Request) -> None:
    """Dependency: 422 problem naming each path, query or JSON body field that contains a NUL."""
    fields = parameter_nul_fields(dict(request.path_params), request.query_params.multi_items())
    body = await request.body()
    if b"\x00" in body:
        # A raw zero byte is never valid UTF-8 JSON; it is how UTF-16/32 bodies look, which json.loads
        # would decode (and whose escaped NULs the check below cannot see). Refused without echoing it.
        raise Problem(
            422,
            "Invalid request",
            "The body must be UTF-8 encoded JSON.",
            code="validation",
            errors=[field_error("body", "must be UTF-8 encoded JSON without NUL bytes")],
        )
    if _JSON_NUL in body:
        try:
            document = await request.json()
        except ValueError:
            document = None  # not JSON: the route's own validation answers for it
        fields += list(dict.fromkeys(nul_fields(document)))
    if fields:
        raise Problem(
            422,
            "Invalid request",
            f"Invalid fields: {', '.join(sorted(fields))}",
            code="validation",
            errors=[field_error(field, NUL_MESSAGE) for field in sorted(fields)],
        )


NUL_GUARD: list[DependsParam] = [Depends(reject_nul)]
