"""Tiny stand-in services served by a real uvicorn on 127.0.0.1, so the gateway talks real HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

PROBLEM = "application/problem+json"


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeService:
    """Records what it receives and answers like a service would."""

    name: str
    url: str = ""
    ready: bool = True
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    # Canned JSON answers by path (e.g. a customer with its owner); other paths are echoed.
    objects: dict[str, Any] = field(default_factory=dict)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Response:
            body = await request.body()
            self.seen.append(
                Seen(
                    request.method,
                    request.url.path,
                    request.scope["query_string"].decode(),
                    {k: v for k, v in request.headers.items()},
                    body,
                )
            )
            return await call_next(request)

        @app.get("/health/ready")
        async def ready() -> JSONResponse:
            body = {"status": "ready" if self.ready else "unavailable", "checks": {"database": {"ok": self.ready}}}
            return JSONResponse(body, status_code=200 if self.ready else 503)

        @app.get("/customers/slow")
        async def slow() -> dict[str, str]:
            await asyncio.wait_for(self.release.wait(), 10)
            return {"status": "late"}

        @app.post("/customers/bulk")
        async def slow_bulk() -> dict[str, int]:
            await asyncio.sleep(0.5)  # longer than the tests' timeout_s, well inside bulk_timeout_s
            return {"created": 1}

        @app.post("/alerts/evaluate")
        async def slow_evaluation() -> dict[str, int]:
            await asyncio.sleep(0.5)  # a page of customers judged: longer than timeout_s, inside bulk_timeout_s
            return {"evaluated": 1}

        @app.post("/customers")
        async def create(request: Request) -> Response:
            payload = await request.json()
            return JSONResponse(
                {"id": "abc", **payload},
                status_code=201,
                headers={"Location": "/customers/abc", "X-Custom": "kept"},
            )

        @app.get("/customers/missing")
        async def missing() -> Response:
            body = {"type": "about:blank", "title": "Customer not found", "status": 404}
            return Response(orjson.dumps(body), status_code=404, media_type=PROBLEM)

        @app.get("/customers/busy")
        async def busy() -> Response:
            # A service answering 503 without saying when to come back.
            return Response(b'{"title": "Busy", "status": 503}', status_code=503, media_type=PROBLEM)

        @app.get("/customers/invalid")
        async def invalid() -> Response:
            body = {
                "type": "urn:crm:problem:validation",
                "title": "Invalid request",
                "status": 422,
                "errors": [{"field": "email", "message": "not an email"}],
            }
            return Response(orjson.dumps(body), status_code=422, media_type=PROBLEM)

        @app.get("/alerts/stream")
        async def stream() -> StreamingResponse:
            async def events() -> AsyncIterator[bytes]:
                for n in (1, 2):
                    yield f"id: {n}\nevent: alert.raised\ndata: {{}}\n\n".encode()
                    await asyncio.sleep(0.05)

            return StreamingResponse(events(), media_type="text/event-stream")

        @app.get("/customers/with-cookie")
        async def with_cookie() -> JSONResponse:
            response = JSONResponse({"status": "ok"})
            response.set_cookie("session", "secret-of-the-first-caller")
            return response

        @app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
        async def echo(path: str, request: Request) -> JSONResponse:
            if request.url.path in self.objects:
                return JSONResponse(self.objects[request.url.path])
            body = {
                "service": self.name,
                "method": request.method,
                "path": request.url.path,
                "query": request.scope["query_string"].decode(),
            }
            return JSONResponse(body, headers={"X-Upstream": self.name})

        return app


class Servers:
    """Apps under real uvicorn on free ports, stopped together (each stop takes a tick of its loop)."""

    def __init__(self) -> None:
        self._running: list[tuple[uvicorn.Server, asyncio.Task[None], socket.socket]] = []

    async def start(self, app: Any) -> str:
        """Serve ``app``; return its base URL once it accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2)
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        self._running.append((server, task, sock))
        while not server.started:
            if task.done():
                task.result()  # surfaces a startup error
                raise RuntimeError("server stopped before starting")
            await asyncio.sleep(0.01)
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for server, _, _ in self._running:
            server.should_exit = True
        await asyncio.gather(*(task for _, task, _ in self._running), return_exceptions=True)
        for _, _, sock in self._running:
            sock.close()
        self._running.clear()


def dead_url() -> str:
    """An address where nothing listens, so connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
