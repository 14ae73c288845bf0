"""RFC 9457 problem details: one error format for every service and the gateway."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from servicekit.context import correlation_id
from servicekit.errors import is_transient

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("servicekit.http")


class Problem(Exception):
    """Raise from a route or domain function to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code
        self.errors = errors
        self.headers = headers
        self.extra = extra


def field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def not_found(
    what: str,
    item_id: str | None = None,
    *,
    detail: str | None = None,
    field: str | None = "id",
    message: str | None = None,
    title: str | None = None,
    **extra: Any,
) -> Problem:
    """The one 404 problem: "<What> not found", naming the id asked for (and the field that carried it)."""
    noun = what.lower()
    if detail is None:
        detail = f"No {noun} with id {item_id}" if item_id is not None else f"No such {noun}."
    errors = [field_error(field, message or f"unknown {noun}")] if field is not None and item_id is not None else None
    return Problem(
        404, title or f"{what[:1].upper()}{what[1:]} not found", detail, code="not_found", errors=errors, **extra
    )


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    code: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:crm:problem:{code}" if code else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    request_id = correlation_id.get()
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=with_retry_after(status, headers)
    )


RETRY_STATUSES = frozenset({429, 503})
DEFAULT_RETRY_AFTER_S = 1


def with_retry_after(status: int, headers: dict[str, str] | None) -> dict[str, str] | None:
    """Every 429 and 503 says when to come back: the caller's Retry-After, else a second."""
    if status not in RETRY_STATUSES or any(k.lower() == "retry-after" for k in headers or {}):
        return headers
    return {**(headers or {}), "Retry-After": str(DEFAULT_RETRY_AFTER_S)}


def render_problem(exc: Problem) -> Response:
    """The response for a raised Problem (the exception handler's, and the gateway's pure-ASGI proxy's)."""
    return problem_response(
        exc.status, exc.title, exc.detail, code=exc.code, errors=exc.errors, headers=exc.headers, **exc.extra
    )


def _location(loc: tuple[Any, ...]) -> str:
    # ("body", "items", 3, "email") -> "items[3].email"; the "body"/"query" prefix is kept for params.
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_errors(raw_errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"field": _location(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")} for e in raw_errors]


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return render_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(list(exc.errors()))
        fields = ", ".join(sorted({e["field"] for e in errors}))
        return problem_response(422, "Invalid request", f"Invalid fields: {fields}", code="validation", errors=errors)

    @app.exception_handler(StaleDataError)
    @app.exception_handler(ObjectDeletedError)
    async def _concurrent_change(request: Request, exc: Exception) -> Response:
        # An UPDATE or DELETE matched no row: a concurrent request changed or removed it first. Nothing
        # of this request was committed; the client reads the resource again and retries.
        log.info("concurrent change", extra={"path": request.url.path, "error": type(exc).__name__})
        return problem_response(
            409,
            "Conflict",
            "The resource was changed or removed by a concurrent request; read it again and retry.",
            code="conflict",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        title = exc.detail if isinstance(exc.detail, str) else "Error"
        return problem_response(exc.status_code, title, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if is_transient(exc):
            # The database is restarting or unreachable: nothing was committed, the client may retry.
            log.warning("database unavailable", extra={"path": request.url.path, "error": repr(exc)})
            return problem_response(
                503,
                "Service unavailable",
                "Storage is temporarily unavailable; retry shortly.",
                code="unavailable",
                headers={"Retry-After": "1"},
            )
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(500, "Internal error", "The request could not be completed.", code="internal")
