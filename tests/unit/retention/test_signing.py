import hashlib
import hmac
from datetime import timedelta

from services.retention.webhooks.signing import backoff, sign, verify

BODY = b'{"type":"alert.raised"}'


def test_the_signature_is_the_hex_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(b"s3cret-s3cret-s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret-s3cret-s3cret", 1700000000, BODY) == f"t=1700000000,v1={expected}"


def test_a_receiver_accepts_a_fresh_genuine_signature_and_refuses_others():
    header = sign("secret-a-secret-a", 1700000000, BODY)
    assert verify("secret-a-secret-a", header, BODY, now=1700000010)
    assert not verify("secret-b-secret-b", header, BODY, now=1700000010)  # wrong secret
    assert not verify("secret-a-secret-a", header, BODY + b" ", now=1700000010)  # body changed
    assert not verify("secret-a-secret-a", header, BODY, now=1700000000 + 3600)  # replayed later
    assert not verify("secret-a-secret-a", "garbage", BODY, now=1700000000)


def test_retries_back_off_exponentially_up_to_a_cap():
    delays = [backoff(n, base_s=2, cap_s=60) for n in range(1, 8)]
    assert delays == [timedelta(seconds=s) for s in (2, 4, 8, 16, 32, 60, 60)]
