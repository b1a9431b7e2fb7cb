"""Topic creation at start-up: every topic of the loop exists before anyone produces to it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

_log = logging.getLogger(__name__)


async def ensure_topics(
    bootstrap: str, topics: Sequence[str], partitions: int, replication_factor: int
) -> None:
    """Create the topics that are missing; existing topics are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in topics if topic not in existing]
        if not missing:
            return
        new_topics = [NewTopic(topic, partitions, replication_factor) for topic in missing]
        try:
            await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            _log.info("topics created concurrently by another process", extra={"topics": missing})
        _log.info("topics created", extra={"topics": missing})
    finally:
        await admin.close()
