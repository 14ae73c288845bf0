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
