"""crm.customer.v1 -> the local customer replica. Handlers never commit; the consumer commits with the inbox row.

Each one is safe to apply twice or out of order: the replica keeps the customer version and the time of
its status, and ignores what is older (see service.py).
"""

from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.events.contracts.customer import CustomerCreated, CustomerErased, CustomerStatusChanged, CustomerUpdated
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers
from services.interaction import service


async def on_customer_created(session: AsyncSession, event: Received[CustomerCreated]) -> None:
    await service.apply_customer_created(session=session, data=event.data)


async def on_customer_updated(session: AsyncSession, event: Received[CustomerUpdated]) -> None:
    await service.apply_customer_updated(session=session, data=event.data)


async def on_customer_status_changed(session: AsyncSession, event: Received[CustomerStatusChanged]) -> None:
    await service.apply_customer_status_changed(session=session, data=event.data)


async def on_customer_erased(session: AsyncSession, event: Received[CustomerErased]) -> None:
    await service.apply_customer_erased(session=session, data=event.data)


HANDLERS: Handlers = {
    CustomerCreated.event_type: on_customer_created,
    CustomerUpdated.event_type: on_customer_updated,
    CustomerStatusChanged.event_type: on_customer_status_changed,
    CustomerErased.event_type: on_customer_erased,
}
