"""The digest of a request body, for idempotency keys that must answer only the same request."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def request_digest(body: Any) -> str:
    """SHA-256 of ``body`` as canonical JSON (sorted keys, no spaces).

    The standard library's encoder, not orjson: a client may send any JSON, integers beyond 64 bits
    included, and a body the service refuses row by row must still be hashed rather than fail with a 500.
    """
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
