"""Value types shared by several contracts."""

from enum import StrEnum


class CustomerStatus(StrEnum):
    prospect = "prospect"
    active = "active"
    churned = "churned"
    won_back = "won_back"


class InteractionType(StrEnum):
    purchase = "purchase"
    return_ = "return"
    call = "call"
    email = "email"
    chat = "chat"
    visit = "visit"
    ticket = "ticket"
    complaint = "complaint"
    survey = "survey"
    feedback = "feedback"


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


SEVERE = frozenset({Severity.high, Severity.critical})


class ContactChannel(StrEnum):
    """The ways the organisation reaches a customer; consent is recorded per channel (docs/consent.md)."""

    email = "email"
    phone = "phone"
    sms = "sms"
    post = "post"
    visit = "visit"  # in person, at the customer's premises


class ConsentStatus(StrEnum):
    opt_in = "opt_in"
    opt_out = "opt_out"


class LegalBasis(StrEnum):
    """GDPR Art. 6(1) lawful bases for contacting a customer."""

    consent = "consent"
    contract = "contract"
    legal_obligation = "legal_obligation"
    vital_interests = "vital_interests"
    public_task = "public_task"
    legitimate_interest = "legitimate_interest"


class ConsentSource(StrEnum):
    """Where a consent change came from (a code, never the person's words)."""

    api = "api"  # an agent or a frontend through the public API
    bulk_import = "bulk_import"
    erp = "erp"  # an inbound ERP event
    marketing = "marketing"  # an inbound marketing-system event (preference centre, unsubscribe link)
    web_form = "web_form"
    phone_call = "phone_call"
    in_person = "in_person"
    written = "written"  # a letter or signed form
