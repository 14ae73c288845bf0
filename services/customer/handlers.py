"""crm.erasure.v1 -> erasure receipts; erp.consents.v1 -> consent changes.

Handlers never commit; the consumer commits with the inbox row.

Every service (this one too) publishes erasure.confirmed once it erased its copy of a customer's
personal data. Recording a receipt is idempotent: a repeat keeps the earliest confirmation.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.events.contracts.erasure import ErasureConfirmed
from servicekit.events.contracts.erp import ErpConsentChanged
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers, PoisonEvent
from services.customer import consent, service


async def on_erasure_confirmed(session: AsyncSession, event: Received[ErasureConfirmed]) -> None:
    data = event.data
    receipt = await service.record_receipt(
        session=session,
        customer_id=data.customer_id,
        service=data.service,
        confirmed_at=data.erased_at,
        summary=data.summary,
        event_id=event.id,
    )
    if receipt is None:
        # Customers are never deleted here, so an unknown id can never be matched later.
        raise PoisonEvent(f"erasure.confirmed for unknown customer {data.customer_id}")


async def on_consent_changed(session: AsyncSession, event: Received[ErpConsentChanged]) -> None:
    # Duplicate-safe: a repeat equals the recorded consent (or is older than it) and changes nothing.
    data = event.data
    change = consent.ChannelChange(data.channel, data.status, data.legal_basis, data.source, data.changed_at)
    if await consent.apply_inbound(session=session, customer_ref=data.customer_ref, change=change) is None:
        # Dead-lettered with the reason (never the reference itself) for the integration to resend.
        raise PoisonEvent("erp.consent.changed names a customer reference no customer has")


HANDLERS: Handlers = {
    ErasureConfirmed.event_type: on_erasure_confirmed,
    ErpConsentChanged.event_type: on_consent_changed,
}
