"""Webhook signatures and retry schedule. Pure.

Header ``X-CRM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``: the timestamp is
signed with the body so a receiver can refuse replays older than its tolerance, and ``v1`` names the
scheme so it can be rotated without breaking receivers.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

SIGNATURE_HEADER = "X-CRM-Signature"
EVENT_ID_HEADER = "X-CRM-Event-Id"
EVENT_TYPE_HEADER = "X-CRM-Event-Type"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does: recompute and compare in constant time, refusing stale timestamps."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int, *, base_s: float, cap_s: float) -> timedelta:
    """Delay before the next attempt after `attempts` failed ones: base, 2 x base, 4 x base ... capped."""
    return timedelta(seconds=min(cap_s, base_s * 2 ** max(attempts - 1, 0)))
