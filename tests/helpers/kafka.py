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


class HighWatermarks:
    """A background thread that reads the fetch high watermark of every partition of `topics`
    every `interval_s` and keeps each change with its time: the history a crash test reports.

    An acknowledged record never leaves a partition, so a high watermark never goes down; a
    decrease is the broker losing (or hiding) records. Use as a context manager; `mark(label)`
    puts an event (a kill, a restart) into the history.
    """

    def __init__(self, settings_or_bootstrap, topics: list[str], interval_s: float = 0.2):
        import threading

        self._kwargs = kafka_kwargs(settings_or_bootstrap)
        self._topics = list(topics)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="high-watermarks", daemon=True)
        self._t0 = time.monotonic()
        self.history: list[tuple[float, str]] = []  # (seconds since start, what changed)
        self.decreases: list[str] = []
        self.errors = 0

    def __enter__(self) -> HighWatermarks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def mark(self, label: str) -> None:
        self.history.append((time.monotonic() - self._t0, f"-- {label}"))

    def report(self, last: int = 60) -> str:
        lines = [f"{t:7.2f}s {what}" for t, what in self.history[-last:]]
        return f"high-watermark history (last {len(lines)} of {len(self.history)}, {self.errors} read errors):\n" + (
            "\n".join(lines)
        )

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer, tps, seen = None, [], {}
        while not self._stop.is_set():
            try:
                if consumer is None:
                    # one record batch per partition and fetch: the watcher reads the high watermark
                    # of a fetch from offset 0, which the broker answers even when it went down
                    consumer = KafkaConsumer(
                        **self._kwargs,
                        group_id=None,
                        enable_auto_commit=False,
                        fetch_max_wait_ms=50,
                        max_partition_fetch_bytes=1,
                        fetch_max_bytes=1,
                    )
                    parts = {t: sorted(consumer.partitions_for_topic(t) or []) for t in self._topics}
                    if not all(parts.values()):
                        raise LookupError(f"no metadata yet for {[t for t, ps in parts.items() if not ps]}")
                    tps = [TopicPartition(t, p) for t, ps in parts.items() for p in ps]
                    consumer.assign(tps)
                for tp in tps:
                    consumer.seek(tp, 0)
                consumer.poll(timeout_ms=50)
                for tp in tps:
                    high = consumer.highwater(tp)
                    old = seen.get(tp)
                    if high is None or high == old:
                        continue
                    what = f"{tp.topic}[{tp.partition}] {old} -> {high}"
                    self.history.append((time.monotonic() - self._t0, what))
                    if old is not None and high < old:
                        self.decreases.append(what)
                    seen[tp] = high
            except Exception:  # a broker restart or a slow metadata answer: read again
                self.errors += 1
                if consumer is not None:
                    consumer.close()
                consumer = None
            self._stop.wait(self._interval_s)
        if consumer is not None:
            consumer.close()
