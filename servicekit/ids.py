"""Random ids for hot paths: version 4 UUIDs as text, the same as ``str(uuid.uuid4())`` and
``uuid.uuid4().hex`` (16 bytes from os.urandom, the version and variant bits set), without building a
``uuid.UUID`` object, which costs more than the randomness."""

from __future__ import annotations

import os

# uuid.UUID(version=4): the variant bits (10) and the version nibble (0100) overwrite the random ones.
_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_SET = (0x8000 << 48) | (4 << 76)


def uuid4_hex() -> str:
    """``uuid.uuid4().hex``: 32 lowercase hex digits."""
    return f"{int.from_bytes(os.urandom(16)) & _CLEAR | _SET:032x}"


def uuid4_text() -> str:
    """``str(uuid.uuid4())``: 8-4-4-4-12 lowercase hex digits."""
    h = uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
