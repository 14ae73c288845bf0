import orjson

from bench.bulk_turns import body


def test_a_bench_body_mixes_purchases_complaints_and_surveys_with_new_external_ids():
    rows = orjson.loads(body(20, 100))["rows"]
    assert [row["type"] for row in rows[:10]] == ["purchase"] * 7 + ["complaint"] * 2 + ["survey"]
    assert len({row["external_id"] for row in rows}) == 20
    assert rows[0]["external_id"] == "bulk-100"
