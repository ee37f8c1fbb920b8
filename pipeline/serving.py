"""The inference worker's per-batch work, shared by its two runtimes.

`InferenceRunner.handle(messages, send)` decodes a micro-batch of requests, runs JUMP, and sends
one prediction per request (bad records to dead letters). Two consumers drive it:
- a bare aiokafka consumer-group loop (`run_direct`, `JUMP_INFERENCE_RUNTIME=aiokafka`, the default),
  which skips Faust's per-event stream machinery -- the inference worker is stateless, it needs no
  Table; `jump bench stream` measured the whole pipeline 1.7x faster with it than with
- the Faust agent (`app.create_inference_app`, `JUMP_INFERENCE_RUNTIME=faust`).
Both are at-least-once: request offsets are committed only after the producer is flushed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass

from . import codec, metrics
from .config import Settings

log = logging.getLogger("jump.inference")


@dataclass(slots=True)
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float          # seconds


class InferenceRunner:
    def __init__(self, settings: Settings, engine=None):
        self.s = settings
        self.engine = engine
        self.stamp = None

    def _stamp(self):
        st = os.stat(self.s.checkpoint)
        return st.st_mtime_ns, st.st_size

    def _new_engine(self):
        from .inference import InferenceEngine
        s = self.s
        return InferenceEngine(s.checkpoint, s.device, s.top_k, cache_sessions=s.cache_sessions)

    def load(self):
        """Load the checkpoint (first call); returns the engine."""
        if self.engine is None:
            import torch
            if self.s.torch_threads:
                torch.set_num_threads(self.s.torch_threads)
            self.stamp = self._stamp()
            self.engine = e = self._new_engine()
            metrics.model_info.labels(e.version, str(e.device)).set(1)
            log.info("serving %s (%d items) on %s", e.version, len(e.items), e.device)
        return self.engine

    async def maybe_reload(self) -> None:
        """Hot reload: a new file at JUMP_CHECKPOINT (written atomically: write, then rename) is
        loaded and validated off the event loop, then swapped in between two micro-batches. A file
        that fails validation is refused; the old model keeps serving."""
        old = self.engine
        if old is None:
            return
        try:
            stamp = self._stamp()
        except OSError:
            return
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, self._new_engine)
        except Exception as exc:
            metrics.model_reloads.labels("refused").inc()
            log.error("refused checkpoint %s: %s; still serving %s", self.s.checkpoint, exc, old.version)
            return
        self.engine = new
        metrics.model_reloads.labels("loaded").inc()
        metrics.model_info.remove(old.version, str(old.device))
        metrics.model_info.labels(new.version, str(new.device)).set(1)
        log.info("now serving %s (was %s)", new.version, old.version)

    async def _dead(self, send, m: Msg, reason: str, detail: str) -> None:
        record = {"reason": reason, "detail": detail[:500], "source_topic": m.topic, "source_partition": m.partition,
                  "source_offset": m.offset, "key": m.key, "value": m.value, "dead_ts": time.time()}
        await send(self.s.topic_dead_letters, m.key, codec.encode("dead_letter", record),
                   m.partition % self.s.output_partitions)

    async def _predict(self, engine, requests):
        if engine.device.type == "cpu":
            # On CPU the model runs inline: an executor thread would fight the event loop for the
            # GIL (measured several times slower on 2 cores).
            return engine.predict(requests)
        return await asyncio.get_running_loop().run_in_executor(None, engine.predict, requests)

    async def handle(self, messages: list[Msg], send) -> int:
        """One micro-batch; `send(topic, key, value, partition)` is awaited per record (it queues
        the record with the producer). Returns the number of predictions sent."""
        s = self.s
        start = time.time()
        requests, origin = [], []
        for m in messages:
            try:
                requests.append(codec.decode("request", m.value))
                origin.append(m)
            except Exception as exc:  # a foreign record on the internal topic: dead-letter it
                metrics.bad_requests.inc()
                await self._dead(send, m, "bad_request", f"request: {exc}")
        if not requests:
            return 0
        for m in origin:
            metrics.queue_wait.observe(max(0.0, start - m.timestamp))
        engine = self.engine
        t0 = time.perf_counter()
        try:
            preds, unknown = await self._predict(engine, requests)
        except Exception:
            metrics.inference_failures.inc()
            log.exception("inference failed on a batch of %d requests; retrying one by one", len(requests))
            preds, unknown = [], 0
            for r, m in zip(requests, origin):      # isolate the failing requests
                try:
                    (p,), u = await self._predict(engine, [r])
                    preds.append(p)
                    unknown += u
                except Exception as exc:
                    preds.append(None)
                    await self._dead(send, m, "inference_failed", f"inference failed: {type(exc).__name__}: {exc}")
        metrics.compute.observe(time.perf_counter() - t0)
        metrics.batch_size.observe(len(requests))
        metrics.unknown_items.inc(unknown)
        # No wait for delivery here: the runtimes flush the producer before committing request
        # offsets, so an unacknowledged prediction is recomputed after a crash (at-least-once).
        emitted = 0
        emit = time.time()
        for pred, r in zip(preds, requests):
            if pred is None:
                continue
            pred["emit_ts"] = emit
            key = f"{pred['session_id']}/{pred['position']}".encode()
            await send(s.topic_predictions, key, codec.encode("prediction", pred), r["partition"] % s.output_partitions)
            metrics.latency.observe(max(0.0, emit - pred["ingest_ts"]))
            metrics.predicted_dwell.observe(pred["dwell_s"])
            emitted += 1
        metrics.predictions.inc(emitted)
        return emitted


async def run_direct(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The inference worker on a bare aiokafka consumer group (`JUMP_INFERENCE_RUNTIME=aiokafka`)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

    s = settings
    runner = InferenceRunner(s)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, runner.load)
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    common = s.aiokafka_kwargs()
    producer = AIOKafkaProducer(linger_ms=2, acks=1,
                                enable_idempotence=False, max_batch_size=1 << 18, **common)
    consumer = AIOKafkaConsumer(group_id=f"{s.app_id}-inference-direct",
                                enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=10_000,
                                heartbeat_interval_ms=3_000, max_poll_records=s.max_batch,
                                fetch_max_wait_ms=s.fetch_max_wait_ms, **common)

    async def commit():
        await producer.flush()
        await consumer.commit()

    class OnRevoke(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            try:
                await commit()
            except Exception as exc:      # the group is rebalancing; the next owner re-reads (at-least-once)
                log.warning("commit on revoke failed: %s", exc)

        async def on_partitions_assigned(self, assigned):
            pass

    async def send(topic, key, value, partition):
        await producer.send(topic, value=value, key=key, partition=partition)

    await producer.start()
    await consumer.start()
    consumer.subscribe([s.topic_requests], listener=OnRevoke())
    log.info("inference (aiokafka runtime) consuming %s", s.topic_requests)
    last_commit = last_reload = time.monotonic()
    metrics.set_ready(True)
    try:
        while not stop.is_set():
            metrics.beat()
            batches = await consumer.getmany(timeout_ms=max(1, int(s.max_wait_s * 1000)), max_records=s.max_batch)
            msgs = [Msg(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp / 1000.0)
                    for records in batches.values() for r in records]
            if msgs:
                await runner.handle(msgs, send)
                lag = 0
                for tp in consumer.assignment():
                    hw, pos = consumer.highwater(tp), await consumer.position(tp)
                    if hw is not None:
                        lag += max(0, hw - pos)
                metrics.consumer_lag.labels(f"{s.app_id}-inference").set(lag)
            now = time.monotonic()
            if now - last_commit >= 1.0:
                await commit()
                last_commit = now
            if s.reload_check_s and now - last_reload >= s.reload_check_s:
                await runner.maybe_reload()
                last_reload = now
    finally:
        try:
            await commit()
        finally:
            await consumer.stop()
            await producer.stop()
