"""One-time survey links: a signed, expiring token naming one survey link. Pure: no I/O, no clock.

Token: ``<link id>.<expiry, unix seconds>.<signature>``, the signature being the URL-safe base64 of
HMAC-SHA256(secret, ``"v1.<link id>.<expiry>"``). The link id alone answers nothing: without the secret
nobody can make a valid token for it, and a token's expiry cannot be moved without breaking its
signature. That a link is answered only once is the database's part (services/retention/surveys.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from enum import StrEnum

MAX_TOKEN = 200
_TOKEN = re.compile(r"^([0-9a-f-]{36})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$")
DIMENSIONS = ("product", "service_support", "relationship")  # the source's satisfaction dimensions
SCALES = {"nps": (0, 10), "csat": (1, 5)}


class Invalid(StrEnum):
    malformed = "malformed"
    forged = "forged"
    expired = "expired"


class InvalidToken(Exception):
    def __init__(self, why: Invalid) -> None:
        super().__init__(why.value)
        self.why = why


def _signature(secret: str, link_id: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"v1.{link_id}.{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def issue(secret: str, link_id: str, expires: int) -> str:
    """The token of a link valid until ``expires`` (unix seconds)."""
    return f"{link_id}.{expires}.{_signature(secret, link_id, expires)}"


def read(secret: str, token: str, *, now: int) -> str:
    """The link id a genuine, unexpired token names; InvalidToken(malformed | forged | expired) otherwise.

    The signature is checked (in constant time) before the expiry, so a forged token learns nothing."""
    match = _TOKEN.match(token) if len(token) <= MAX_TOKEN else None
    if match is None:
        raise InvalidToken(Invalid.malformed)
    link_id, expires, signature = match.group(1), int(match.group(2)), match.group(3)
    if not hmac.compare_digest(signature, _signature(secret, link_id, expires)):
        raise InvalidToken(Invalid.forged)
    if now >= expires:
        raise InvalidToken(Invalid.expired)
    return link_id


def check_answer(survey: str, score: int, dimensions: dict[str, int]) -> list[tuple[str, str]]:
    """(field, message) for each problem of an answer: the score and every dimension on the survey's scale."""
    low, high = SCALES[survey]
    problems = []
    if not low <= score <= high:
        problems.append(("score", f"must be between {low} and {high} for a {survey} survey"))
    for name, value in dimensions.items():
        if name not in DIMENSIONS:
            problems.append((f"dimensions.{name}", f"not a dimension; choose from {', '.join(DIMENSIONS)}"))
        elif not low <= value <= high:
            problems.append((f"dimensions.{name}", f"must be between {low} and {high} for a {survey} survey"))
    return problems
