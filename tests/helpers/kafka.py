"""Kafka helpers for the tests (kafka-python, manual partition assignment, no consumer groups).

Tansu's ListOffsets (`end_offsets`) is wrong on batched topics, so these helpers count records by
consuming, and use the fetch high watermark (`consumer.highwater(tp)`) where they need the end.
"""

from __future__ import annotations

import time


def kafka_kwargs(settings_or_bootstrap) -> dict:
    """kafka-python connection kwargs from a Settings object or a bootstrap string."""
    if hasattr(settings_or_bootstrap, "kafka_python_kwargs"):
        return settings_or_bootstrap.kafka_python_kwargs()
    return {"bootstrap_servers": str(settings_or_bootstrap).split(",")}


def consume_all(
    settings_or_bootstrap, topic: str, idle_s: float = 2.0, max_wait_s: float = 60, *, stop_at_end: bool = False
) -> list:
    """Every record of `topic` (all partitions, from the beginning) as kafka-python ConsumerRecords,
    in partition then offset order.

    Stops when no record arrived for `idle_s`, or after `max_wait_s` in all (returns what it has);
    with `stop_at_end`, as soon as every partition is read up to its fetch high watermark (use when
    the producer has already flushed). Raises RuntimeError when the topic does not exist.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **kafka_kwargs(settings_or_bootstrap),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
    )
    try:
        deadline = time.monotonic() + max_wait_s
        topic_deadline = time.monotonic() + min(10.0, max_wait_s)
        while not (parts := consumer.partitions_for_topic(topic)):
            if time.monotonic() > topic_deadline:
                raise RuntimeError(f"topic {topic} does not exist")
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: dict[int, list] = {tp.partition: [] for tp in tps}
        last = time.monotonic()
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=100, max_records=10_000)
            n = 0
            for tp, records in batches.items():
                got[tp.partition].extend(records)
                n += len(records)
            now = time.monotonic()
            if n:
                last = now
            if stop_at_end and all(
                consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp) for tp in tps
            ):
                break
            if now - last >= idle_s:
                break
        return [r for p in sorted(got) for r in got[p]]
    finally:
        consumer.close()


def produce(settings_or_bootstrap, topic: str, records, partition: int | None = None) -> None:
    """Send (key: bytes | None, value: bytes) pairs and wait for every acknowledgement."""
    from pipeline.config import Settings
    from pipeline.runtime.kafka import produce_records

    settings = settings_or_bootstrap
    if not hasattr(settings, "kafka_python_kwargs"):
        settings = Settings.from_env(env={}, bootstrap_servers=str(settings_or_bootstrap))
    produce_records(settings, topic, records, partition)
