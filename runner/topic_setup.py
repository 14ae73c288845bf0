"""Create every topic of the platform and its dead-letter twin: ``python -m runner.topic_setup ensure``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from contracts import topics
from servicekit.kafka import security_kwargs
from servicekit.settings import KafkaSettings


def all_topics() -> list[str]:
    return [name for topic in topics.ALL for name in (topic, topics.dead_letter(topic))]


async def ensure_topics(kafka: KafkaSettings, *, timeout_s: float = 60.0) -> list[str]:
    """Create missing topics; returns the ones created. Waits for the broker up to timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers, client_id="crm-topics", **security_kwargs(kafka)
        )
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            await admin.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in all_topics() if t not in existing]
        new = [
            NewTopic(t, num_partitions=kafka.partitions, replication_factor=kafka.replication_factor) for t in missing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                await admin.create_topics(new)
        return missing
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.topic_setup")
    parser.add_argument("command", choices=["ensure", "list"])
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(all_topics()))
        return
    created = asyncio.run(ensure_topics(KafkaSettings()))
    print(f"topics ready ({len(all_topics())}); created now: {', '.join(created) or 'none'}", file=sys.stderr)


if __name__ == "__main__":
    main()
