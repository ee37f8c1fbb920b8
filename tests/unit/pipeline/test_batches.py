"""pipeline.runtime.batches.RecordBatches: records grouped per (topic, partition) into aiokafka's own
BatchBuilder, in order, a further batch when one is full (and `add` says so). The delivery itself
runs against the broker in the pipeline's integration and crash tests."""

from __future__ import annotations

import asyncio

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from pipeline.runtime.batches import RecordBatches


class Producer:
    """aiokafka's create_batch / send_batch surface; `sent` keeps (topic, partition, records)."""

    def __init__(self, batch_size: int):
        self.batch_size, self.sent = batch_size, []

    def create_batch(self):
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch, topic, *, partition):
        records = [(r.key, r.value) for r in DefaultRecordBatch(bytearray(batch._build()))]
        self.sent.append((topic, partition, records))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def test_records_keep_their_order_per_partition_and_a_full_batch_is_reported():
    async def run():
        producer = Producer(batch_size=200)
        b = RecordBatches(producer)
        fits = [b.add("t", i % 2, f"k{i}".encode(), bytes(40)) for i in range(8)]
        assert b.add("u", 0, b"del", None)  # a deletion (no value) is a record too
        assert b.records == 9
        await b.deliver()
        assert b.records == 0
        return producer.sent, fits

    sent, fits = asyncio.run(run())
    by_tp: dict = {}
    for topic, partition, records in sent:
        by_tp.setdefault((topic, partition), []).append([k for k, _ in records])
    assert [k for batch in by_tp[("t", 0)] for k in batch] == [b"k0", b"k2", b"k4", b"k6"]
    assert [k for batch in by_tp[("t", 1)] for k in batch] == [b"k1", b"k3", b"k5", b"k7"]
    assert by_tp[("u", 0)] == [[b"del"]]
    # 200 bytes hold two 40-byte records with their batch header (61 + 2 x 49): each partition needed
    # a second batch, and `add` said False exactly for the record that opened it
    assert len(by_tp[("t", 0)]) == 2 and len(by_tp[("t", 1)]) == 2
    assert fits.count(False) == 2


def test_a_record_larger_than_a_batch_goes_alone():
    async def run():
        producer = Producer(batch_size=100)
        b = RecordBatches(producer)
        assert b.add("t", 0, b"big", bytes(5000))  # the first record of a batch always fits
        assert not b.add("t", 0, b"next", b"x")
        await b.send()
        return producer.sent

    assert [[k for k, _ in recs] for _, _, recs in asyncio.run(run())] == [[b"big"], [b"next"]]
