"""The Faust apps: the sessionizer (clicks -> requests, training log, dead letters) and the
inference worker (requests -> predictions). Each runs as its own process type (Procfile).

Both agents take micro-batches (`stream.take_events`) and write records with the aiokafka producer
directly (values are already msgpack bytes), which keeps Faust's per-event cost off the hot path.
"""
from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import weakref
from pathlib import Path

import faust
from faust.streams import _current_event  # the event a Table write is attributed to

from .. import codec
from .. import metrics
from ..config import Settings
from ..core.sessionizer import Message, SessionizerCore

log = logging.getLogger("jump.pipeline")


def _patch_fetch_wait() -> None:
    """Faust hard-codes the consumer's fetch_max_wait_ms (1500); use the app's JUMP_FETCH_MAX_WAIT_MS."""
    from faust.transport.drivers import aiokafka as driver
    create = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "jump_patched", False):
        return

    def _create_worker_consumer(self, transport):
        consumer = create(self, transport)
        wait = getattr(self.app, "jump_fetch_max_wait_ms", None)
        if wait:
            consumer._fetch_max_wait_ms = wait      # read by aiokafka when its fetcher starts
        return consumer

    _create_worker_consumer.jump_patched = True
    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


def _patch_recovery_highwaters() -> None:
    """Table recovery reads each changelog partition up to its end offset, which Faust takes from
    ListOffsets. Tansu answers ListOffsets wrong (too low, even 0 for a non-empty partition), so a
    restarted sessionizer would recover part of its state. Take the larger of ListOffsets and the
    high watermark of a real fetch (which Tansu reports right); on Kafka the two agree."""
    from faust.transport.drivers import aiokafka as driver
    original = driver.AIOKafkaConsumerThread._highwaters
    if getattr(original, "jump_patched", False):
        return

    async def _highwaters(self, partitions):
        reported = dict(await original(self, partitions))
        kwargs = getattr(self.app, "jump_kafka_kwargs", None)
        if not kwargs or not partitions or self.consumer.in_transaction:
            return reported
        return await fetch_highwaters(kwargs, list(partitions), reported)

    _highwaters.jump_patched = True
    driver.AIOKafkaConsumerThread._highwaters = _highwaters


async def fetch_highwaters(kafka_kwargs: dict, partitions: list, reported: dict, tries: int = 50) -> dict:
    """max(reported, the fetch high watermark) per partition, with a throwaway group-less consumer."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    tps = {tp: TopicPartition(tp.topic, tp.partition) for tp in partitions}   # Faust's TP -> aiokafka's
    consumer = AIOKafkaConsumer(**kafka_kwargs, enable_auto_commit=False, fetch_max_wait_ms=50)
    try:
        await consumer.start()
        consumer.assign(list(tps.values()))
        for tp, atp in tps.items():
            consumer.seek(atp, max(0, reported.get(tp) or 0))
        for _ in range(tries):
            await consumer.getmany(*tps.values(), timeout_ms=100, max_records=1)
            if all(consumer.highwater(atp) is not None for atp in tps.values()):
                break
        out = {}
        for tp, atp in tps.items():
            hw = consumer.highwater(atp)
            if hw is None:
                log.warning("no fetch high watermark for %s; using ListOffsets (%s)", tp, reported.get(tp))
            out[tp] = max(reported.get(tp) or 0, hw or 0)
        return out
    except Exception:
        log.exception("fetch high watermarks failed; using ListOffsets %s", reported)
        return reported
    finally:
        await consumer.stop()


def _app(settings: Settings, role: str) -> faust.App:
    _patch_fetch_wait()
    _patch_recovery_highwaters()
    app_id = f"{settings.app_id}-{role}"
    datadir = settings.data_dir or str(Path(tempfile.gettempdir()) / "jump-stream" / app_id)
    app = faust.App(
        app_id,
        broker=[f"kafka://{h}" for h in settings.bootstrap_hosts],
        broker_credentials=settings.faust_broker_credentials(),
        store="memory://",                 # state is rebuilt from the changelog topic at start-up
        datadir=datadir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        broker_session_timeout=10,
        broker_heartbeat_interval=3,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=16384,
        broker_max_poll_records=2000,
        producer_linger_ms=2,
        producer_max_batch_size=1 << 18,
        web_enabled=False,
        processing_guarantee="at_least_once",
    )
    app.jump_fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.jump_kafka_kwargs = settings.aiokafka_kwargs()

    @app.timer(interval=min(5.0, settings.health_stale_s / 4))
    async def _heartbeat():                # /healthz: the worker's event loop is alive
        metrics.beat()

    return app


def _update_lag(app: faust.App, topics: set[str]) -> None:
    """Consumer lag from the fetch high watermark (ListOffsets is wrong on Tansu, see README)."""
    try:
        consumer = app.consumer
        total = 0
        for tp in consumer.assignment():
            if tp.topic not in topics:
                continue
            hw = consumer.highwater(tp)
            pos = consumer._read_offset.get(tp)  # last offset handed to the streams
            if hw is not None and pos is not None:
                total += max(0, hw - (pos + 1))
        metrics.consumer_lag.labels(app.conf.id).set(total)
    except Exception:  # lag is best effort; never break the hot path for it
        pass


def create_sessionizer_app(settings: Settings) -> faust.App:
    s = settings
    app = _app(s, "sessionizer")
    source = app.topic(s.topic_clicks, s.topic_rekeyed, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    table = app.Table("sessions", partitions=s.partitions, key_type=bytes, value_type=bytes)  # raw bytes
    topic_index = {s.topic_clicks: 0, s.topic_rekeyed: 1}
    core = SessionizerCore(s)
    state = {"loaded_generation": -1, "generation": 0, "owned": set(), "assigned": set()}

    @app.on_partitions_assigned.connect
    async def _assigned(app_, assigned, **kwargs):
        state["assigned"] = {tp.partition for tp in assigned if tp.topic in topic_index}
        state["generation"] += 1

    def _write(event, key: bytes, value: bytes | None) -> None:
        token = _current_event.set(weakref.ref(event))
        try:
            if value is None:
                if key in table.data:
                    del table[key]
            else:
                table[key] = value
        finally:
            _current_event.reset(token)

    @app.agent(source)
    async def sessionize(stream):
        producer = app.producer
        metrics.set_ready(True)
        async for events in stream.take_events(s.sessionizer_batch, within=s.sessionizer_wait_s):
            t0 = time.perf_counter()
            if state["loaded_generation"] != state["generation"]:
                # partitions this process kept through the rebalance keep their in-memory state
                core.load(list(table.data.items()), keep=state["owned"] & state["assigned"])
                state["owned"] = set(state["assigned"])
                state["loaded_generation"] = state["generation"]
            msgs = [Message(topic_index[e.message.topic], e.message.partition, e.message.offset,
                            e.message.key, e.message.value, e.message.timestamp) for e in events]
            out = core.process(msgs)
            # 1. outputs first, delivery awaited: a persisted state never hides a lost output
            futures = []
            send = producer.send
            for p, k, v in out.requests:
                futures.append(await send(s.topic_requests, k, v, p, None, None))
            for p, k, v in out.training_log:
                futures.append(await send(s.topic_training_log, k, v, p % s.output_partitions, None, None))
            for p, k, v in out.dead_letters:
                futures.append(await send(s.topic_dead_letters, k, v, p % s.output_partitions, None, None))
            for _, k, v in out.rekeyed:
                futures.append(await send(s.topic_rekeyed, k, v, None, None, None))
            if futures:
                await asyncio.gather(*futures)
            # 2. then the state, 3. then each partition's meta record, alone in its own batch
            by_partition = {e.message.partition: e for e in events}
            for key, (p, sess) in out.state.items():
                _write(by_partition.get(p, events[-1]), key, None if sess is None else sess.pack())
            await producer.flush()
            for p, (key, raw) in out.meta.items():
                _write(by_partition.get(p, events[-1]), key, raw)
            await producer.flush()
            metrics.record_sessionizer_batch(out)
            metrics.open_sessions.set(core.open_sessions)
            if core.meta:
                metrics.stream_time.set(max(m.stream_time for m in core.meta.values()))
            metrics.batch_seconds.observe(time.perf_counter() - t0)
            _update_lag(app, {s.topic_clicks, s.topic_rekeyed})

    @app.timer(interval=s.tick_interval_s)
    async def tick():
        # The idle fallback must reach the agent as data (Table writes happen only there).
        value = codec.encode("tick", {"tick": True, "wall_ts": time.time()})
        for p in range(s.partitions):
            await app.producer.send(s.topic_clicks, codec.TICK_KEY, value, p, None, None)

    return app


def create_inference_app(settings: Settings, engine=None) -> faust.App:
    """The GPU worker on Faust: micro-batches of requests -> JUMP -> predictions (see serving.py)."""
    from ..core.inference import InferenceRunner, Msg, watch_updates
    s = settings
    app = _app(s, "inference")
    source = app.topic(s.topic_requests, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=s.partitions)
    runner = InferenceRunner(s, engine)

    if s.reload_check_s > 0:
        @app.timer(interval=s.reload_check_s)
        async def reload_checkpoint():
            await runner.maybe_reload()

    @app.task
    async def follow_model_updates():
        await watch_updates(s, runner)

    @app.agent(source)
    async def infer(stream):
        producer = app.producer

        async def send(topic, key, value, partition):
            await producer.send(topic, key, value, partition, None, None)

        await runner.wait_for_model()
        metrics.set_ready(True)
        async for events in stream.take_events(s.max_batch, within=s.max_wait_s):
            runner.swap()                          # a staged model serves from this batch on
            await runner.handle([Msg(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                                     e.message.value, e.message.timestamp) for e in events], send)
            _update_lag(app, {s.topic_requests})

    return app


def run_worker(app: faust.App, settings: Settings) -> None:
    """Run a Faust worker in the foreground (topics created first, metrics served)."""
    from ..devtools.broker import ensure_topics
    if settings.create_topics:
        ensure_topics(settings)
    metrics.serve(settings.metrics_port, settings.metrics_addr, settings.health_stale_s)
    faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False).execute_from_commandline()
