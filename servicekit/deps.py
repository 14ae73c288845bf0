"""FastAPI dependencies every service uses."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for one request; the route commits once, domain functions never commit."""
    async with request.app.state.database.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
