"""crm.erasure.v1 -> erasure receipts.

Every service (this one too) publishes erasure.confirmed once it erased its copy of a customer's
personal data. Recording a receipt is idempotent: a repeat keeps the earliest confirmation.
"""

from contracts.erasure import ErasureConfirmed
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers, PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.customer.erasure import service


async def on_erasure_confirmed(uow: UnitOfWork, event: Received[ErasureConfirmed]) -> None:
    data = event.data
    receipt = await service.record_receipt(
        session=uow.session,
        customer_id=data.customer_id,
        service=data.service,
        confirmed_at=data.erased_at,
        summary=data.summary,
        event_id=event.id,
    )
    if receipt is None:
        # Customers are never deleted here, so an unknown id can never be matched later.
        raise PoisonEvent(f"erasure.confirmed for unknown customer {data.customer_id}")


HANDLERS: Handlers = {ErasureConfirmed.event_type: on_erasure_confirmed}
