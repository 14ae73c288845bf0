"""Where consent changes arrive: the consent replica the contact policy reads. Never commits."""

from __future__ import annotations

from contracts.customer import ConsentChanged
from servicekit.events.envelope import Received
from servicekit.unit_of_work import UnitOfWork
from services.retention.touches import service as touches


async def on_consent_changed(uow: UnitOfWork, event: Received[ConsentChanged]) -> None:
    # Order-safe: a version at or below the replica's is ignored.
    await touches.on_consent_changed(session=uow.session, data=event.data)
    uow.state(touches.Consents).replicas.pop(event.data.customer_id, None)  # read again when next needed
