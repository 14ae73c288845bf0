"""erp.consents.v1 -> consent changes."""

from contracts.erp import ErpConsentChanged
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers, PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.customer.consent import service as consent


async def on_consent_changed(uow: UnitOfWork, event: Received[ErpConsentChanged]) -> None:
    # Duplicate-safe: a repeat equals the recorded consent (or is older than it) and changes nothing.
    data = event.data
    change = consent.ChannelChange(data.channel, data.status, data.legal_basis, data.source, data.changed_at)
    if await consent.apply_inbound(session=uow.session, customer_ref=data.customer_ref, change=change) is None:
        # Dead-lettered with the reason (never the reference itself) for the integration to resend.
        raise PoisonEvent("erp.consent.changed names a customer reference no customer has")


HANDLERS: Handlers = {ErpConsentChanged.event_type: on_consent_changed}
