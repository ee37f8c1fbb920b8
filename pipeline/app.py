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

from . import codec, metrics
from .config import Settings
from .sessionizer import Message, SessionizerCore

log = logging.getLogger("jump.pipeline")


def _app(settings: Settings, role: str) -> faust.App:
    app_id = f"{settings.app_id}-{role}"
    datadir = settings.data_dir or str(Path(tempfile.gettempdir()) / "jump-stream" / app_id)
    return faust.App(
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
    state = {"loaded_generation": -1, "generation": 0}
    app.jump_core = core  # for tests and introspection

    @app.on_partitions_assigned.connect
    async def _assigned(app_, assigned, **kwargs):
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
        async for events in stream.take_events(s.sessionizer_batch, within=s.sessionizer_wait_s):
            t0 = time.perf_counter()
            if state["loaded_generation"] != state["generation"]:
                core.load(list(table.data.items()))
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
    """The GPU worker: micro-batches of requests -> JUMP `predict_last` -> predictions."""
    from .inference import InferenceEngine
    s = settings
    app = _app(s, "inference")
    source = app.topic(s.topic_requests, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=s.partitions)
    holder = {"engine": engine}
    app.jump_engine = holder

    def _stamp():
        st = os.stat(s.checkpoint)
        return st.st_mtime_ns, st.st_size

    def _engine():
        if holder["engine"] is None:
            holder["stamp"] = _stamp()
            holder["engine"] = InferenceEngine(s.checkpoint, s.device, s.top_k, cache_sessions=s.cache_sessions)
            e = holder["engine"]
            metrics.model_info.labels(e.version, str(e.device)).set(1)
            log.info("serving %s (%d items) on %s", e.version, len(e.items), e.device)
        return holder["engine"]

    if s.reload_check_s > 0:
        @app.timer(interval=s.reload_check_s)
        async def reload_checkpoint():
            # Hot reload: a new file at JUMP_CHECKPOINT (written atomically: write, then rename) is
            # loaded and validated off the event loop, then swapped in between two micro-batches.
            # A file that fails validation is refused; the old model keeps serving.
            old = holder.get("engine")
            if old is None:
                return
            try:
                stamp = _stamp()
            except OSError:
                return
            if stamp == holder.get("stamp"):
                return
            holder["stamp"] = stamp
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(None, lambda: InferenceEngine(
                    s.checkpoint, s.device, s.top_k, cache_sessions=s.cache_sessions))
            except Exception as exc:
                metrics.model_reloads.labels("refused").inc()
                log.error("refused checkpoint %s: %s; still serving %s", s.checkpoint, exc, old.version)
                return
            holder["engine"] = new
            metrics.model_reloads.labels("loaded").inc()
            metrics.model_info.remove(old.version, str(old.device))
            metrics.model_info.labels(new.version, str(new.device)).set(1)
            log.info("now serving %s (was %s)", new.version, old.version)

    @app.agent(source)
    async def infer(stream):
        producer = app.producer
        loop = asyncio.get_running_loop()
        engine = await loop.run_in_executor(None, _engine)
        async for events in stream.take_events(s.max_batch, within=s.max_wait_s):
            start = time.time()
            requests, origin = [], []
            for e in events:
                try:
                    requests.append(codec.decode("request", e.message.value))
                    origin.append(e.message)
                except Exception as exc:  # a foreign record on the internal topic: dead-letter it
                    metrics.bad_requests.inc()
                    record = {"reason": "bad_request", "detail": f"request: {exc}"[:500],
                              "source_topic": e.message.topic, "source_partition": e.message.partition,
                              "source_offset": e.message.offset, "key": e.message.key, "value": e.message.value,
                              "dead_ts": start}
                    await producer.send(s.topic_dead_letters, e.message.key, codec.encode("dead_letter", record),
                                        e.message.partition % s.output_partitions, None, None)
            if not requests:
                continue
            for m in origin:
                metrics.queue_wait.observe(max(0.0, start - m.timestamp))
            engine = holder["engine"]
            t0 = time.perf_counter()
            try:
                preds, unknown = await loop.run_in_executor(None, engine.predict, requests)
            except Exception:
                metrics.inference_failures.inc()
                log.exception("inference failed on a batch of %d requests; retrying one by one", len(requests))
                preds, unknown = await _one_by_one(loop, engine, requests, producer, s, origin)
            metrics.compute.observe(time.perf_counter() - t0)
            metrics.batch_size.observe(len(requests))
            metrics.unknown_items.inc(unknown)
            futures = []
            for pred, r in zip(preds, requests):
                if pred is None:
                    continue
                emit = time.time()
                pred["emit_ts"] = emit
                key = f"{pred['session_id']}/{pred['position']}".encode()
                futures.append(await producer.send(s.topic_predictions, key, codec.encode("prediction", pred),
                                                   r["partition"] % s.output_partitions, None, None))
                metrics.latency.observe(max(0.0, emit - pred["ingest_ts"]))
                metrics.predicted_dwell.observe(pred["dwell_s"])
            if futures:
                await asyncio.gather(*futures)
            metrics.predictions.inc(len(futures))
            _update_lag(app, {s.topic_requests})

    return app


async def _one_by_one(loop, engine, requests, producer, s, origin):
    """After a failed batch, isolate the failing requests: dead-letter them, predict the rest."""
    preds, unknown = [], 0
    for r, m in zip(requests, origin):
        try:
            (p,), u = await loop.run_in_executor(None, engine.predict, [r])
            preds.append(p)
            unknown += u
        except Exception as exc:
            preds.append(None)
            record = {"reason": "inference_failed", "detail": f"inference failed: {type(exc).__name__}: {exc}"[:500],
                      "source_topic": m.topic, "source_partition": m.partition, "source_offset": m.offset,
                      "key": m.key, "value": m.value, "dead_ts": time.time()}
            await producer.send(s.topic_dead_letters, m.key, codec.encode("dead_letter", record),
                                m.partition % s.output_partitions, None, None)
    return preds, unknown


def run_worker(app: faust.App, settings: Settings) -> None:
    """Run a Faust worker in the foreground (topics created first, metrics served)."""
    from .broker import ensure_topics
    if settings.create_topics:
        ensure_topics(settings)
    metrics.serve(settings.metrics_port, settings.metrics_addr)
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "aio"
    worker = faust.Worker(app, loglevel=settings.log_level, loop=None, redirect_stdouts=False)
    del loop
    worker.execute_from_commandline()
