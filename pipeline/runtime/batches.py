"""Records written as aiokafka record batches: one future per (topic, partition) batch, not per record.

`producer.send()` costs a coroutine, a future and the accumulator's bookkeeping for every record;
at one or two records per click (a request, a Table write) that was a large part of the
sessionizer's CPU per click. A batch is built with `producer.create_batch()` (aiokafka's public
BatchBuilder: appending a record is byte packing) and handed over with `send_batch`, whose future
resolves when the broker has acknowledged the whole batch (with the producer's `acks`).

Order: records of one (topic, partition) keep the order they were added in (one builder at a time
per partition; aiokafka queues a partition's batches in submission order). Atomicity: the broker
appends a record batch whole or not at all, so records of one partition that fit one batch (`add`
returned True for each) are written together or not at all.
"""

from __future__ import annotations

import asyncio

from aiokafka.partitioner import DefaultPartitioner


class RecordBatches:
    """Records grouped per (topic, partition), sent as record batches by `send()`.

    `producer`: an aiokafka AIOKafkaProducer (faust_compat.kafka_producer(app) under Faust).
    """

    __slots__ = ("_full", "_open", "producer", "records")

    def __init__(self, producer):
        self.producer = producer
        self._open: dict[tuple[str, int], object] = {}  # (topic, partition) -> BatchBuilder being filled
        self._full: list[tuple[str, int, object]] = []  # builders that are full, in order
        self.records = 0

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers=None) -> bool:
        """Append a record; False when it opened a further batch for its partition (the partition's
        records since the last `send()` no longer fit one record batch, so they are not one atomic
        append any more)."""
        tp = (topic, partition)
        headers = headers or []  # aiokafka's builder takes a list only
        builder = self._open.get(tp)
        if builder is None:
            builder = self._open[tp] = self.producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:  # full: the next one
            self._full.append((topic, partition, builder))
            builder = self._open[tp] = self.producer.create_batch()
            builder.append(timestamp=None, key=key, value=value, headers=headers)  # a first record always fits
            self.records += 1
            return False
        self.records += 1
        return True

    async def send(self) -> list[asyncio.Future]:
        """Submit every batch (full ones first, in order); the futures resolve on delivery."""
        # never an empty batch (a failed append can leave one): the embedded Tansu broker stores it and
        # its fetch then stops at it for good (no later record of the partition is readable)
        pending = [x for x in self._full + [(t, p, b) for (t, p), b in self._open.items()] if x[2].record_count()]
        self._full, self._open, self.records = [], {}, 0
        send_batch = self.producer.send_batch
        return [await send_batch(b, t, partition=p) for t, p, b in pending]

    async def deliver(self) -> None:
        """`send()`, then wait until the broker has acknowledged every batch (raises its error)."""
        futures = await self.send()
        if futures:
            await asyncio.gather(*futures)


class KeyPartitioner:
    """The partition Kafka's default partitioner gives a keyed record (murmur2 of the key over the
    topic's partitions, as aiokafka's and the Java client's producers choose it; no key: a random
    partition), for records written as batches to an explicit partition. `prime` fetches the topics'
    metadata once; the producer's client keeps it fresh afterwards."""

    def __init__(self):
        self._choose = DefaultPartitioner()

    async def prime(self, producer, topics) -> None:
        for topic in topics:
            await producer.partitions_for(topic)

    def __call__(self, producer, topic: str, key: bytes | None) -> int:
        parts = sorted(producer.client.cluster.partitions_for_topic(topic))
        available = list(producer.client.cluster.available_partitions_for_topic(topic))
        return self._choose(key, parts, available)
