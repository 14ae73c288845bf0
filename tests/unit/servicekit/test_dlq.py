"""runner.dlq reads a .dlq record back into the original message and picks what a replay sends."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from runner.dlq import choose, parse


def _record(offset: int, consumer: str, headers: list[tuple[str, bytes]] | None = None) -> ConsumerRecord:
    original = [("content-type", b"application/cloudevents+json"), ("ce_type", b"score.updated"), ("ce_id", b"ev-1")]
    dlq = [
        ("dlq.reason", b"handler failed"),
        ("dlq.consumer", consumer.encode()),
        ("dlq.origin", b"crm.scoring.v1/4/99"),
    ]
    return ConsumerRecord(
        topic="crm.scoring.v1.dlq",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"cust-1",
        value=b"{}",
        checksum=None,
        serialized_key_size=6,
        serialized_value_size=2,
        headers=headers if headers is not None else original + dlq,
    )


def test_a_dead_letter_gives_back_the_original_topic_key_body_and_headers_without_dlq_ones() -> None:
    letter = parse(_record(7, "retention"), "crm.scoring.v1.dlq")

    assert letter.origin_topic == "crm.scoring.v1"
    assert letter.consumer == "retention" and letter.event_id == "ev-1" and letter.reason == "handler failed"
    assert letter.key == b"cust-1" and letter.value == b"{}"
    assert [k for k, _ in letter.headers] == ["content-type", "ce_type", "ce_id"]


def test_a_dead_letter_without_an_origin_header_goes_back_to_the_topic_its_dlq_belongs_to() -> None:
    letter = parse(_record(1, "scoring", headers=[("dlq.consumer", b"scoring")]), "crm.interaction.v1.dlq")

    assert letter.origin_topic == "crm.interaction.v1" and letter.event_id is None


def test_a_replay_takes_only_the_chosen_group_and_offsets() -> None:
    letters = [
        parse(_record(o, c), "crm.scoring.v1.dlq") for o, c in [(1, "retention"), (2, "scoring"), (3, "retention")]
    ]

    assert [x.offset for x in choose(letters, "retention", [])] == [1, 3]
    assert [x.offset for x in choose(letters, "retention", [3])] == [3]
    assert [x.offset for x in choose(letters, None, [2])] == [2]
