"""servicekit.reports.report_route: a report declared once answers JSON or its table as CSV."""

from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field

from servicekit.pagination import Limit, Offset
from servicekit.problems import install_problem_handlers
from servicekit.reports import CSV_RESPONSE, CsvTable, PeriodDep, ReportFields, ReportFormat, report_route


class Row(BaseModel):
    name: str
    n: int


class Other(BaseModel):
    label: str


class Report(BaseModel):
    from_: str = Field(alias="from")
    to: str
    items: list[Row]
    others: list[Other]
    total: int
    limit: int
    offset: int


def _table(arguments: Mapping[str, Any]) -> CsvTable:
    return CsvTable("others", Other, "others") if arguments["other"] else CsvTable("items", Row, "rows")


router = APIRouter()


@report_route(router, "/report", Report, _table)
async def a_report(
    request: Request,
    period: PeriodDep,
    other: bool = False,
    format: ReportFormat = None,
    limit: Limit = 2,
    offset: Offset = 0,
) -> ReportFields:
    """The docstring is the operation's description."""
    rows = [Row(name=f"r{i}", n=i) for i in range(5)]
    return {"items": rows[offset : offset + limit], "others": [Other(label="x")], "total": len(rows)}


class Plain(BaseModel):
    items: list[Row]


@report_route(router, "/plain", Plain, CsvTable("items", Row, "plain"))
async def plain(request: Request, format: ReportFormat = None) -> ReportFields:
    return {"items": [Row(name="a", n=1)]}


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    return app


@pytest.fixture
async def client():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
        yield client


async def test_json_carries_the_period_and_the_page_the_route_took(client: httpx.AsyncClient) -> None:
    response = await client.get("/report", params={"from": "2026-01-01", "to": "2026-02-01", "offset": 1})

    assert response.status_code == 200
    assert response.json() == {
        "from": "2026-01-01",
        "to": "2026-02-01",
        "items": [{"name": "r1", "n": 1}, {"name": "r2", "n": 2}],
        "others": [{"label": "x"}],
        "total": 5,
        "limit": 2,
        "offset": 1,
    }


async def test_csv_answers_the_table_chosen_from_the_arguments(client: httpx.AsyncClient) -> None:
    period = {"from": "2026-01-01", "to": "2026-02-01"}
    rows = await client.get("/report", params={**period, "format": "csv"})
    others = await client.get("/report", params={**period, "other": True}, headers={"Accept": "text/csv"})

    assert rows.text == "name,n\nr0,0\nr1,1\n"
    assert rows.headers["content-disposition"] == 'attachment; filename="rows.csv"'
    assert others.text == "label\nx\n"
    assert others.headers["content-disposition"] == 'attachment; filename="others.csv"'


async def test_a_report_without_a_period_has_no_from_and_a_reversed_period_is_a_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/plain")).json() == {"items": [{"name": "a", "n": 1}]}
    reversed_ = await client.get("/report", params={"from": "2026-02-01", "to": "2026-01-01"})
    assert reversed_.status_code == 422
    assert reversed_.json()["errors"] == [{"field": "query.to", "message": "must be a later day than from"}]


def test_the_operation_is_the_functions_own() -> None:
    operation = _app().openapi()["paths"]["/report"]["get"]

    assert operation["operationId"] == "a_report_report_get"
    assert operation["summary"] == "A Report"
    assert operation["description"] == "The docstring is the operation's description."
    assert [p["name"] for p in operation["parameters"]] == ["other", "format", "limit", "offset", "from", "to"]
    assert operation["responses"]["200"]["content"]["text/csv"] == CSV_RESPONSE["content"]["text/csv"]


def test_a_report_function_without_request_or_format_is_refused() -> None:
    with pytest.raises(TypeError, match="must take format, request"):

        @report_route(APIRouter(), "/x", Plain, CsvTable("items", Row, "x"))
        async def missing() -> ReportFields:
            return {}
