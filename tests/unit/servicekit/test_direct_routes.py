"""servicekit.direct refuses to call a route directly when skipping the framework would skip its checks."""

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel

from servicekit.direct import direct, install_direct_routes
from servicekit.validation import NUL_GUARD


class Body(BaseModel):
    name: str


def role_check() -> None:
    """Stands in for a route's own dependency (a role check)."""


def app_with(router: APIRouter, prefix: str = "") -> FastAPI:
    app = FastAPI(dependencies=NUL_GUARD)
    app.include_router(router, prefix=prefix)
    install_direct_routes(app)
    return app


def test_a_direct_route_with_a_dependency_of_its_own_is_refused() -> None:
    router = APIRouter()

    @router.post("/things", dependencies=[Depends(role_check)])
    @direct
    async def create(data: Body, request: Request) -> Response:
        return Response(status_code=201)

    with pytest.raises(TypeError, match="no dependency"):
        app_with(router).build_middleware_stack()


def test_a_direct_route_under_a_router_dependency_is_refused() -> None:
    router = APIRouter(dependencies=[Depends(role_check)])

    @router.post("/things")
    @direct
    async def create(data: Body, request: Request) -> Response:
        return Response(status_code=201)

    with pytest.raises(TypeError, match="no dependency"):
        app_with(router).build_middleware_stack()


def test_a_direct_route_with_other_parameters_is_refused() -> None:
    router = APIRouter()

    @router.post("/things")
    @direct
    async def create(data: Body, request: Request, dry_run: bool = False) -> Response:
        return Response(status_code=201)

    with pytest.raises(TypeError, match="one body model and the Request"):
        app_with(router).build_middleware_stack()


def test_a_direct_route_under_a_prefix_is_refused() -> None:
    router = APIRouter()

    @router.post("/things")
    @direct
    async def create(data: Body, request: Request) -> Response:
        return Response(status_code=201)

    with pytest.raises(TypeError, match="prefix"):
        app_with(router, prefix="/v1").build_middleware_stack()
