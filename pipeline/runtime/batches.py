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

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> bool:
        """Append a record; False when it opened a further batch for its partition (the partition's
        records since the last `send()` no longer fit one record batch, so they are not one atomic
        append any more)."""
        tp = (topic, partition)
        builder = self._open.get(tp)
        if builder is None:
            builder = self._open[tp] = self.producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value) is None:  # full: start the next one
            self._full.append((topic, partition, builder))
            builder = self._open[tp] = self.producer.create_batch()
            builder.append(timestamp=None, key=key, value=value)  # a first record always fits
            self.records += 1
            return False
        self.records += 1
        return True

    async def send(self) -> list[asyncio.Future]:
        """Submit every batch (full ones first, in order); the futures resolve on delivery."""
        pending = self._full + [(t, p, b) for (t, p), b in self._open.items()]
        self._full, self._open, self.records = [], {}, 0
        send_batch = self.producer.send_batch
        return [await send_batch(b, t, partition=p) for t, p, b in pending]

    async def deliver(self) -> None:
        """`send()`, then wait until the broker has acknowledged every batch (raises its error)."""
        futures = await self.send()
        if futures:
            await asyncio.gather(*futures)
