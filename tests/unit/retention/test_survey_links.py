"""Signed one-time survey tokens (pure)."""

import pytest

from services.retention.surveys import survey_links as sl

SECRET = "a-survey-secret-for-tests-0123456789abcdef"
LINK = "3f2c8a8e-1b7d-4c3e-9a55-0c6a1c2d9e10"


def test_a_token_names_its_link_until_it_expires():
    token = sl.issue(SECRET, LINK, 2_000)
    assert sl.read(SECRET, token, now=1_999) == LINK
    with pytest.raises(sl.InvalidToken) as exc:
        sl.read(SECRET, token, now=2_000)
    assert exc.value.why is sl.Invalid.expired


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: t.replace(".2000.", ".9000."),  # expiry moved
        lambda t: t.replace(LINK, "00000000-0000-0000-0000-000000000000"),  # another link
    ],
)
def test_a_forged_token_is_refused_before_its_expiry_is_looked_at(tamper):
    token = tamper(sl.issue(SECRET, LINK, 2_000))
    with pytest.raises(sl.InvalidToken) as exc:
        sl.read(SECRET, token, now=10_000)  # also after expiry: forged, not expired
    assert exc.value.why is sl.Invalid.forged


def test_another_secret_signs_other_tokens():
    with pytest.raises(sl.InvalidToken) as exc:
        sl.read("another-secret-of-enough-length-0123456789", sl.issue(SECRET, LINK, 2_000), now=1)
    assert exc.value.why is sl.Invalid.forged


@pytest.mark.parametrize("token", ["", "abc", "x" * 500, f"{LINK}.12.", f"{LINK}.-1.{'a' * 43}", "../../etc"])
def test_malformed_tokens(token):
    with pytest.raises(sl.InvalidToken) as exc:
        sl.read(SECRET, token, now=1)
    assert exc.value.why is sl.Invalid.malformed


def test_answers_are_checked_on_the_surveys_scale():
    assert sl.check_answer("nps", 10, {"product": 0, "relationship": 10}) == []
    assert sl.check_answer("csat", 0, {}) == [("score", "must be between 1 and 5 for a csat survey")]
    assert [f for f, _ in sl.check_answer("nps", 5, {"price": 3, "service_support": 11})] == [
        "dimensions.price",
        "dimensions.service_support",
    ]
