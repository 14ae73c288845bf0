"""A consumer's fetches are capped by its settings, so a lagging consumer holds a bounded amount of records."""

from servicekit.kafka import make_consumer
from servicekit.settings import KafkaSettings


async def test_the_consumer_fetches_at_most_the_configured_bytes_per_partition_and_per_fetch():
    kafka = KafkaSettings(consumer_max_partition_fetch_bytes=65536, consumer_fetch_max_bytes=131072)
    consumer = make_consumer(kafka, "interactions", group_id="g", client_id="c", max_records=200)
    # aiokafka hands these to its fetcher at start (each fetch request carries them)
    assert consumer._max_partition_fetch_bytes == 65536
    assert consumer._fetch_max_bytes == 131072
    assert consumer._max_poll_records == 200


async def test_by_default_a_fetch_brings_far_less_than_aiokafkas_50_mib():
    kafka = KafkaSettings()
    consumer = make_consumer(kafka, "interactions", group_id="g", client_id="c", max_records=500)
    assert consumer._fetch_max_bytes == 2**20
    assert consumer._max_partition_fetch_bytes == 2**18
