"""The one way every list endpoint pages: ``?limit=&offset=`` with the same bounds everywhere.

An unbounded integer query parameter passes validation and then overflows PostgreSQL's bigint (a 500);
bounding it here turns that into a 422 naming the parameter, for every service and the gateway alike.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

DEFAULT_PAGE = 50
MAX_PAGE = 200
# Deeper than this, page with filters (or a cursor where the list offers one): an offset makes the
# database walk every row it skips.
MAX_OFFSET = 1_000_000
# PostgreSQL bigint: the largest sequence number or id a query may compare against.
BIGINT_MAX = 2**63 - 1

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"page size, at most {MAX_PAGE}")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description=f"rows to skip, at most {MAX_OFFSET}")]

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list: ``total`` counts every match of the filters, ``items`` holds at most ``limit``.

    Subclass it with a name (``class AlertsPublic(Page[AlertPublic])``) so the OpenAPI schema keeps one."""

    items: list[Item]
    total: int
    limit: int
    offset: int
