import math

import pytest

from services.customer.customers import attributes as attrs


@pytest.mark.parametrize(
    ("value", "kind"),
    [("pro", "string"), (10, "number"), (29.9, "number"), (True, "boolean"), ("2024-05-01", "date")],
)
def test_scalar_values_and_iso_dates_are_typed(value, kind):
    assert attrs.value_type("plan", value) == kind


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"a": 1}, "Nested objects"),
        ([1, 2], "Lists"),
        (None, "null"),
        (math.inf, "finite"),
        ("2024-02-30", "ISO date"),
        ("x" * 501, "at most 500"),
    ],
)
def test_non_scalar_values_are_refused_naming_the_attribute(value, says):
    with pytest.raises(attrs.InvalidAttribute, match=says) as caught:
        attrs.validate({"plan": "pro", "contract": value})
    assert caught.value.key == "contract"


@pytest.mark.parametrize("key", ["", "1st", "with space", "a-b", "x" * 65])
def test_attribute_names_are_identifiers(key):
    with pytest.raises(attrs.InvalidAttribute):
        attrs.check_key(key)


def test_merge_sets_values_and_removes_keys_set_to_null():
    assert attrs.merge({"plan": "pro", "seats": 3}, {"seats": None, "region": "north"}) == {
        "plan": "pro",
        "region": "north",
    }


def test_numbers_have_one_canonical_text_so_filters_match_any_spelling():
    assert attrs.index_value(29) == attrs.index_value(29.0) == ("number", "29")
    assert ("number", "29") in attrs.query_candidates("29.00")
    assert ("number", "29.9") in attrs.query_candidates("29.90")
    assert ("boolean", "true") in attrs.query_candidates("TRUE")
    # "01234" stays a string too, so a zip code stored as text is still found.
    assert ("string", "01234") in attrs.query_candidates("01234")


async def test_the_api_answers_a_nested_attribute_with_422_naming_it(api):
    response = await api.client.post("/customers", json={"name": "A", "attributes": {"plan": {"tier": "pro"}}})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["attributes.plan"]


async def test_a_patch_with_a_nested_attribute_is_422_naming_it(api):
    customer = await api.create(attributes={"plan": "pro"})
    response = await api.client.patch(
        f"/customers/{customer['id']}", json={"attributes": {"seats": [1]}}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["attributes.seats"]
