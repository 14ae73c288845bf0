"""The interaction service's HTTP routes, assembled from its features."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from services.interaction.complaints.router import router as complaints
from services.interaction.inbound.router import router as inbound
from services.interaction.interactions.router import router as interactions
from services.interaction.replica.directory import close_customer_directory
from services.interaction.reports.router import router as reports


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Merged into the app's lifespan by include_router: closes the customer-service client on shutdown.
    yield
    await close_customer_directory(app)


router = APIRouter(lifespan=lifespan)
for feature in (interactions, complaints, inbound, reports):
    router.include_router(feature)
