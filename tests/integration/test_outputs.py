"""What a downstream consumer sees: a JSON-configured stream (JUMP_OUTPUT_FORMAT=json) read end to end
by a plain kafka-python consumer, every record validated against its JSON Schema in
deploy/asyncapi.yaml; Kafka-conventional keys (the session key), partitions (Kafka's default
partitioner) and order (a session's predictions in position order on one partition); the identity
in the `jump-id` header; and no worker writing to the producers' `clicks` topic."""

from __future__ import annotations

import json
import random

import pytest
from aiokafka.partitioner import murmur2
from kafka import KafkaConsumer, TopicPartition

from pipeline import codec
from tests.helpers.kafka import consume_all, produce
from tests.helpers.stream import Pipeline, make_settings, random_model
from tests.unit.deploy.test_asyncapi import validator

pytestmark = pytest.mark.timeout(240)

GAP = 600.0


def _clicks(n_users: int = 24, seed: int = 3) -> list[tuple[str, str, float]]:
    """(user, item, ts): two sessions per user (a gap > GAP between them), time-ordered overall."""
    rng = random.Random(seed)
    t0 = 1_700_000_000.0
    out = []
    for u in range(n_users):
        t = t0 + rng.uniform(0, 100)
        for session in range(2):
            for _ in range(rng.randint(2, 6)):
                out.append((f"user-{u}", f"item-{rng.randint(0, 30)}", t))
                t += rng.uniform(5, 120)
            t += GAP + 500 * (session + 1)
    return sorted(out, key=lambda c: c[2])


def _read(settings, topic: str) -> list:
    """Every record of `topic` with a plain kafka-python consumer (no group, from the beginning)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return list(consumer)
    finally:
        consumer.close()


def test_json_stream_read_by_a_plain_consumer(kafka_bootstrap, tmp_path):
    clicks = _clicks()
    items = sorted({i for _, i, _ in clicks})
    s = make_settings(kafka_bootstrap, "json", tmp_path, output_format="json", session_gap_s=GAP, idle_close_s=2.0)
    random_model(tmp_path / "model.ckpt", items)
    pipe = Pipeline(s, tmp_path)
    bad = [(b"user-x", b"{not json"), (b"user-y", json.dumps({"user": "user-y", "item": "a"}).encode())]
    try:
        pipe.start("sessionizer")
        pipe.start("inference")
        produce(s, s.topic_clicks, [(u.encode(), codec.encode_click(u, i, t)) for u, i, t in clicks] + bad)
        n_sessions = 2 * len({u for u, _, _ in clicks})
        pipe.wait_count(s.topic_predictions, "prediction", len(clicks), timeout_s=120)
        pipe.wait_count(s.topic_training_log, "training_log", n_sessions, timeout_s=120)  # closed when idle
        preds, logs, dead = (_read(s, t) for t in (s.topic_predictions, s.topic_training_log, s.topic_dead_letters))
    finally:
        pipe.stop()

    positions: dict[str, list[int]] = {}
    for kind, records in (("prediction", preds), ("training_log", logs), ("dead_letter", dead)):
        check = validator(kind)
        for r in records:
            value = json.loads(r.value)  # plain JSON: any language reads it
            assert [e.message for e in check.iter_errors(value)] == [], value
            headers = dict(r.headers)
            assert headers["content-type"] == b"application/json"
            assert headers["jump-id"] == codec.identity(kind, value).encode()
            # keyed by the session key (a dead letter: the rejected message's), default partitioner
            if kind == "dead_letter":
                assert r.key == codec.decode(kind, r.value)["key"]  # base64 in the JSON value
            else:
                assert r.key == value["session_key"].encode()
            assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % s.output_partitions
            if kind == "prediction":
                positions.setdefault(value["session_id"], []).append(value["position"])
    # every click predicted once, each session's predictions in position order (one partition, in order)
    assert sum(map(len, positions.values())) == len(preds) == len(clicks)
    assert all(p == list(range(len(p))) for p in positions.values()), positions
    assert len(logs) == n_sessions
    by_user: dict[bytes, list] = {}
    for r in logs:
        by_user.setdefault(r.key, []).append(json.loads(r.value)["start_ts"])
    assert all(v == sorted(v) for v in by_user.values())  # a user's sessions in order, on its partition
    assert sorted(json.loads(r.value)["reason"] for r in dead) == ["missing_field", "undecodable"]
    assert {codec.decode("dead_letter", r.value)["value"] for r in dead} == {v for _, v in bad}  # base64 round trip
    # no worker writes to clicks: it holds exactly what the producer wrote; the ticks have their topic
    on_clicks = consume_all(s, s.topic_clicks, idle_s=0.5)
    assert len(on_clicks) == len(clicks) + len(bad)
    assert not any(r.key == codec.TICK_KEY for r in on_clicks)
    ticks = consume_all(s, s.topic_ticks, idle_s=0.5)
    assert ticks and {r.key for r in ticks} == {codec.TICK_KEY}
    assert {r.partition for r in ticks} == set(range(s.partitions))


def test_idempotence_is_detected_off_on_the_embedded_broker(kafka_bootstrap, tmp_path):
    """JUMP_PRODUCER_IDEMPOTENCE=auto asks the broker for a producer id: Tansu refuses (Kafka grants
    one), so its producers run with acks=all and no idempotence instead of failing their first send."""
    import asyncio
    import os

    from pipeline.runtime.kafka import broker_grants_producer_ids, producer_options

    s = make_settings(kafka_bootstrap, "idem", tmp_path)
    granted = asyncio.run(broker_grants_producer_ids(s))
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):  # a real cluster: whatever it says, auto follows it
        assert asyncio.run(producer_options(s)) == {"acks": "all", "enable_idempotence": granted}
        return
    assert granted is False
    assert asyncio.run(producer_options(s)) == {"acks": "all", "enable_idempotence": False}
    one = make_settings(kafka_bootstrap, "idem", tmp_path, producer_acks="1", producer_idempotence="auto")
    assert asyncio.run(producer_options(one)) == {"acks": 1, "enable_idempotence": False}  # auto needs acks=all
    forced = make_settings(kafka_bootstrap, "idem", tmp_path, producer_idempotence="true")
    assert asyncio.run(producer_options(forced)) == {"acks": "all", "enable_idempotence": True}


def test_a_renamed_group_adopts_the_former_groups_offsets(kafka_bootstrap, tmp_path):
    """The aiokafka inference runtime's group was `<app>-inference-direct`; now both runtimes share
    `<app>-inference`. An upgraded worker copies the old group's offsets (for partitions the new group
    has none for) instead of answering every request on the topic again."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from pipeline.runtime.kafka import adopt_offsets, ensure_topics

    s = make_settings(kafka_bootstrap, "adopt", tmp_path)
    ensure_topics(s)
    old, new = f"{s.app_id}-inference-direct", f"{s.app_id}-inference"
    tp0, tp1 = TopicPartition(s.topic_requests, 0), TopicPartition(s.topic_requests, 1)

    async def commit(group, offsets):
        c = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **s.aiokafka_kwargs())
        await c.start()
        try:
            c.assign(list(offsets))
            await c.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        finally:
            await c.stop()

    async def committed(group):
        c = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **s.aiokafka_kwargs())
        await c.start()
        try:
            return {tp.partition: await c.committed(tp) for tp in (tp0, tp1)}
        finally:
            await c.stop()

    asyncio.run(commit(old, {tp0: 17, tp1: 4}))
    asyncio.run(commit(new, {tp1: 9}))  # the new group's own offset wins
    assert asyncio.run(adopt_offsets(s, old, new, s.topic_requests)) == {0: 17}
    assert asyncio.run(committed(new)) == {0: 17, 1: 9}
    assert asyncio.run(adopt_offsets(s, old, new, s.topic_requests)) == {}  # once only
