from servicekit.digest import request_digest


def test_the_digest_ignores_key_order_and_tells_bodies_apart() -> None:
    assert request_digest([{"a": 1, "b": [2, 3]}]) == request_digest([{"b": [2, 3], "a": 1}])
    assert request_digest([{"a": 1}]) != request_digest([{"a": 2}])


def test_integers_beyond_64_bits_are_hashed_rather_than_failing() -> None:
    huge = 10**30
    assert request_digest([{"customer_id": huge}]) != request_digest([{"customer_id": huge + 1}])
