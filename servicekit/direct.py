"""Direct routes: a busy POST route called without FastAPI's routing and dependency solving, in its plain case.

A route marked with ``@direct`` keeps its FastAPI declaration (its OpenAPI, and every request that is not
the plain case). In front of the app's router, a request for its exact method and path whose body is JSON
(``application/json``), has no query string, carries no NUL (the app-wide guard's concern) and validates as
the route's body model is handed to the endpoint at once: no walk over every route, no dependency graph, no
second read of the body. Anything else (invalid JSON or fields, another content type, a NUL, a query
string, a body that could not be read) goes to the router untouched, with the body it read replayed, so
refusals and their problem bodies are the framework's own. The endpoint's exceptions reach the app's
exception handlers as they would from the router (this sits inside Starlette's ExceptionMiddleware).

An endpoint qualifies when it takes the body model and the ``Request`` only, has no dependencies of its
own and returns a ``Response``; anything else is refused when the app is built.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.validation import reject_nul

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Response]])
_MARK = "__servicekit_direct__"
_JSON = b"application/json"


def direct(endpoint: Endpoint) -> Endpoint:
    """Mark a route's endpoint to be called directly in its plain case (see the module's docstring)."""
    setattr(endpoint, _MARK, True)
    return endpoint


@dataclass(frozen=True)
class _Target:
    route: APIRoute
    model: type[BaseModel]
    body_name: str
    request_name: str


def _target(route: APIRoute, dependencies: list[Any]) -> _Target:
    """What calling the route directly needs; TypeError when skipping the framework would change anything."""
    hints = typing.get_type_hints(route.endpoint)
    hints.pop("return", None)
    models = [name for name, kind in hints.items() if isinstance(kind, type) and issubclass(kind, BaseModel)]
    requests = [name for name, kind in hints.items() if kind is Request]
    # Only the app-wide NUL guard may stand between the request and the endpoint: it is what the plain
    # case's checks stand in for. A dependency of the route's own would be skipped, so it is refused.
    calls = [*dependencies, *(d.call for d in route.dependant.dependencies)]
    if len(models) != 1 or len(requests) != 1 or len(hints) != 2 or any(c is not reject_nul for c in calls):
        raise TypeError(f"{route.path}: a direct route takes one body model and the Request, and no dependency")
    return _Target(route, hints[models[0]], models[0], requests[0])


def _marked(routes: list[Any], dependencies: list[Any]) -> Iterator[_Target]:
    """The @direct routes among routes, however deep in included routers (FastAPI keeps them nested)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = route.include_context
            if context.prefix or context.max_body_size is not None:
                if any(getattr(r, "endpoint", None) and getattr(r.endpoint, _MARK, False) for r in included.routes):
                    raise TypeError("a direct route's router is included without a prefix or a body limit")
                continue
            inherited = [*dependencies, *(d.dependency for d in context.dependencies)]
            inherited += [d.dependency for d in included.dependencies]
            yield from _marked(included.routes, inherited)
        elif isinstance(route, APIRoute) and getattr(route.endpoint, _MARK, False):
            yield _target(route, dependencies)


class DirectRoutes:
    """Pure ASGI, in place of the app's router: marked routes' plain case straight to the endpoint."""

    def __init__(self, router: ASGIApp, targets: list[_Target]) -> None:
        self.router = router
        self.targets = {(method, t.route.path): t for t in targets for method in t.route.methods or ()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self.targets.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if target is None or scope.get("query_string") or not _json_content(scope["headers"]):
            await self.router(scope, receive, send)
            return
        messages: list[Message] = []
        try:
            body = await _whole_body(receive, messages)
        except Exception as error:  # e.g. over the body limit: the router's path answers it
            await self.router(scope, _replaying(messages, receive, error), send)
            return
        data = None if body is None else _plain_case(target.model, body)
        if data is None:  # the framework answers (a refusal, or a client that went away)
            await self.router(scope, _replaying(messages, receive), send)
            return
        scope["route"], scope["endpoint"], scope["path_params"] = target.route, target.route.endpoint, {}
        request = Request(scope, _replaying(messages, receive))
        response = await target.route.endpoint(**{target.body_name: data, target.request_name: request})
        await response(scope, receive, send)


def _plain_case(model: type[BaseModel], body: bytes) -> BaseModel | None:
    """The body as the model when nothing about it needs the framework's answer, else None."""
    if not body or b"\x00" in body or b"\\u0000" in body:
        return None
    try:
        # As FastAPI reads a JSON body: the standard library's json, then the model's own validator in
        # Python mode (FastAPI's TypeAdapter runs it as it is; a model's model_validate may add work of
        # its own, as SQLModel's does, building the instance a second way).
        validated: BaseModel = model.__pydantic_validator__.validate_python(json.loads(body))
        return validated
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _json_content(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == _JSON
    return False


async def _whole_body(receive: Receive, messages: list[Message]) -> bytes | None:
    """The body, keeping every message read in `messages`; None when the client went away first."""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None
        if not message.get("more_body"):
            return b"".join(m.get("body", b"") for m in messages)


def _replaying(messages: list[Message], receive: Receive, error: Exception | None = None) -> Receive:
    """A receive that hands out the messages already read, then raises `error` or carries on with `receive`."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        if error is not None:
            raise error
        return await receive()

    return replay


def install_direct_routes(app: FastAPI) -> None:
    """Put DirectRoutes in place of the router in the app's middleware stack (inside its exception
    handling), when any of its routes is marked @direct."""
    build = app.build_middleware_stack

    def build_with_direct_routes() -> Any:
        stack = build()
        marked = list(_marked(app.router.routes, [d.dependency for d in app.router.dependencies]))
        if not marked:
            return stack
        layer: Any = stack
        while getattr(layer, "app", None) is not app.router:
            layer = layer.app
        layer.app = DirectRoutes(app.router, marked)
        return stack

    app.build_middleware_stack = build_with_direct_routes  # type: ignore[method-assign]
