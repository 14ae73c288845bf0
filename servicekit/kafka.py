"""Kafka clients configured once, the same way for every service."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner, murmur2

from servicekit.settings import KafkaSettings


def security_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """The TLS and SASL arguments of every aiokafka client (producer, consumer, admin) from KAFKA_*."""
    kwargs: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile or None,
            certfile=kafka.ssl_certfile or None,
            keyfile=kafka.ssl_keyfile or None,
        )
    if kafka.security_protocol.startswith("SASL_"):
        # aiokafka takes the SCRAM login through the same two arguments as PLAIN.
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password
    return kwargs


@lru_cache(maxsize=65536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def cached_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (murmur2 of the key, as the Java client), with each key's hash kept:
    aiokafka's murmur2 is pure Python, and a relay sends many events of the same customers in a row."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


def make_producer(kafka: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    # aiokafka's defaults (acks=1, no idempotence) can lose or duplicate on broker failover.
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        partitioner=cached_partitioner,
        request_timeout_ms=kafka.request_timeout_ms,
        **security_kwargs(kafka),
    )


def make_consumer(
    kafka: KafkaSettings, *topics: str, group_id: str, client_id: str, max_records: int
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        fetch_min_bytes=kafka.consumer_fetch_min_bytes,
        # Short, also when idle: a partition whose records were just handed over is not in the fetch
        # already waiting at the broker, so its next records can wait for that fetch to come back.
        fetch_max_wait_ms=kafka.consumer_fetch_wait_ms,
        max_partition_fetch_bytes=kafka.consumer_max_partition_fetch_bytes,
        fetch_max_bytes=kafka.consumer_fetch_max_bytes,
        request_timeout_ms=max(kafka.request_timeout_ms, 40000),
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
        **security_kwargs(kafka),
    )


def set_idle_fetch(consumer: AIOKafkaConsumer, kafka: KafkaSettings, *, idle: bool) -> None:
    """Long-poll (return with the first byte, wait up to consumer_idle_fetch_wait_ms) or gather again.

    aiokafka builds each fetch request from its fetcher's settings and has no public call to change them,
    so this sets them on the fetcher; fetches already at the broker keep theirs. A unit test fails if an
    aiokafka upgrade renames them.
    """
    fetcher = consumer._fetcher
    fetcher._fetch_min_bytes = 1 if idle else kafka.consumer_fetch_min_bytes
    fetcher._fetch_max_wait_ms = kafka.consumer_idle_fetch_wait_ms if idle else kafka.consumer_fetch_wait_ms


async def topic_partitions(
    bootstrap_servers: str, topic: str, kafka: KafkaSettings | None = None
) -> list[TopicPartition]:
    """The partitions of a topic (for tools that assign partitions by hand: replays, audits, tests)."""
    extra = security_kwargs(kafka) if kafka is not None else {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, **extra)
    await producer.start()
    try:
        return [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
    finally:
        await producer.stop()
