"""Every table of the interaction service, gathered from its features into one MetaData (the SPEC's, the
migrations')."""

from services.interaction.complaints.models import ComplaintStep
from services.interaction.db import metadata
from services.interaction.inbound.models import ParkedEvent
from services.interaction.interactions.models import Interaction
from services.interaction.replica.models import KnownCustomer

__all__ = ["ComplaintStep", "Interaction", "KnownCustomer", "ParkedEvent", "metadata"]
