"""servicekit.ids: the random ids are version 4 UUIDs written as the uuid module writes them."""

import uuid
from unittest import mock

from servicekit import ids


def test_ids_are_version_4_uuids_in_the_uuid_modules_spelling():
    for _ in range(2000):
        text, hex_digits = ids.uuid4_text(), ids.uuid4_hex()
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert uuid.UUID(hex=hex_digits).hex == hex_digits and uuid.UUID(hex=hex_digits).version == 4


def test_the_same_random_bytes_give_the_uuid_modules_id():
    # All ones and all zeros: every version and variant bit is overwritten either way.
    for raw in (b"\xff" * 16, b"\x00" * 16, bytes(range(16)), bytes(range(240, 256))):
        with mock.patch("os.urandom", return_value=raw):
            expected = uuid.uuid4()
            assert ids.uuid4_text() == str(expected)
            assert ids.uuid4_hex() == expected.hex


def test_ids_do_not_repeat():
    assert len({ids.uuid4_text() for _ in range(10_000)}) == 10_000
