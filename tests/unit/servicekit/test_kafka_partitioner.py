"""The relay's producer puts every key on the partition aiokafka's default partitioner (the Java client's) picks."""

from aiokafka.partitioner import DefaultPartitioner

from servicekit.kafka import cached_partitioner


def test_the_cached_partitioner_picks_the_default_partitioners_partition_for_every_key():
    keys = [f"customer-{i}".encode() for i in range(500)] + [b"", b"\xff\x00", "ünï".encode()]
    for count in (1, 3, 8, 12):
        partitions = list(range(count))
        for key in keys * 2:  # the second round is answered from the cache
            assert cached_partitioner(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_a_message_without_key_goes_to_an_available_partition():
    assert cached_partitioner(None, [0, 1, 2], [2]) == 2
