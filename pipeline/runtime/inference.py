"""The inference worker's runtimes around core.inference.InferenceRunner.

- `run_direct`: the worker on a bare aiokafka consumer group (`JUMP_INFERENCE_RUNTIME=aiokafka`, the
  default; the Faust agent is runtime.faust_app.create_inference_app). Micro-batches of up to
  JUMP_MAX_BATCH requests, request offsets committed only after the producer is flushed
  (at-least-once), a staged model swapped in between two batches.
- `watch_updates`: follows jump-model-updates (both runtimes), handing announcements to the runner.
- `poll_model`: the periodic current.json / JUMP_CHECKPOINT check (aiokafka runtime; the Faust app
  runs the same check as a timer).
"""

from __future__ import annotations

import asyncio
import logging
import time

from .. import codec, metrics
from ..codec import Msg
from ..config import Settings
from ..core.inference import InferenceRunner
from .kafka import adopt_offsets, producer_options, read_from_beginning, stop_on_signals

log = logging.getLogger("jump.inference")


async def run_direct(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The inference worker on a bare aiokafka consumer group (`JUMP_INFERENCE_RUNTIME=aiokafka`)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

    s = settings
    runner = InferenceRunner(s)
    stop = stop_on_signals(stop)
    if await runner.wait_for_model(stop) is None:
        return
    updates = [asyncio.create_task(watch_updates(s, runner, stop))]
    if s.reload_check_s:
        updates.append(asyncio.create_task(poll_model(runner, s.reload_check_s, stop)))
    common = s.aiokafka_kwargs()
    group = f"{s.app_id}-inference"
    # before this group was shared with the Faust runtime, the aiokafka runtime's was "-inference-direct":
    # an upgraded worker resumes from that group's offsets instead of answering every request again
    try:
        adopted = await adopt_offsets(s, f"{s.app_id}-inference-direct", group, s.topic_requests)
    except Exception as exc:
        log.warning("could not look up the former group %s-inference-direct's offsets: %s", s.app_id, exc)
        adopted = {}
    if adopted:
        log.info("resuming %s from the former group %s-inference-direct: %s", group, s.app_id, adopted)
    options = await producer_options(s)
    producer = AIOKafkaProducer(linger_ms=2, max_batch_size=1 << 18, **options, **common)
    consumer = AIOKafkaConsumer(
        # the Faust runtime's group (its app id): switching JUMP_INFERENCE_RUNTIME resumes from the
        # same committed offsets (stop every worker first: the two runtimes' group protocols differ)
        group_id=group,
        enable_auto_commit=False,
        # requests are internal (this pipeline wrote them): a new group reads them all
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        max_poll_records=s.max_batch,
        fetch_max_wait_ms=s.fetch_max_wait_ms,
        **common,
    )

    async def commit():
        await producer.flush()
        await consumer.commit()

    class OnRevoke(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            try:
                await commit()
            except Exception as exc:  # the group is rebalancing; the next owner re-reads (at-least-once)
                log.warning("commit on revoke failed: %s", exc)

        async def on_partitions_assigned(self, assigned):
            pass

    async def send(topic, key, value, headers):  # partition: the key's (default partitioner)
        await producer.send(topic, value=value, key=key, headers=headers)

    await producer.start()
    await consumer.start()
    consumer.subscribe([s.topic_requests], listener=OnRevoke())
    log.info("inference (aiokafka runtime) consuming %s", s.topic_requests)
    last_commit = time.monotonic()
    metrics.set_ready(True)
    try:
        while not stop.is_set():
            metrics.beat()
            batches = await consumer.getmany(timeout_ms=max(1, int(s.max_wait_s * 1000)), max_records=s.max_batch)
            msgs = [
                Msg(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp / 1000.0)
                for records in batches.values()
                for r in records
            ]
            runner.swap()  # a staged model serves from this batch on
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
    finally:
        for task in updates:
            task.cancel()
        try:
            await commit()
        finally:
            if consumer is not None:
                await consumer.stop()
            await producer.stop()


async def poll_model(runner: InferenceRunner, interval_s: float, stop: asyncio.Event) -> None:
    """`runner.maybe_reload()` every interval_s (a task: loading never blocks the consumer loop)."""
    while not stop.is_set():
        await asyncio.sleep(interval_s)
        try:
            await runner.maybe_reload()
        except Exception:
            log.exception("model reload check failed")


async def watch_updates(settings: Settings, runner: InferenceRunner, stop: asyncio.Event | None = None) -> None:
    """Follow jump-model-updates: every partition from the beginning, no consumer group (every worker
    sees every announcement); the highest seq of each fetch goes to `runner.apply_update`. Runs until
    cancelled or `stop`; a broker problem is logged and retried (current.json polling covers the gap)."""
    s = settings
    while not (stop is not None and stop.is_set()):
        consumer = None
        try:
            consumer, _ = await read_from_beginning(s, s.topic_model_updates)
            log.info("following model announcements on %s", s.topic_model_updates)
            while not (stop is not None and stop.is_set()):
                batches = await consumer.getmany(timeout_ms=1000)
                best = None
                for records in batches.values():
                    for r in records:
                        try:
                            rec = codec.decode("model_update", r.value)
                            if not isinstance(rec.get("seq"), int) or not isinstance(rec.get("path"), str):
                                raise ValueError("seq or path missing")
                        except ValueError as exc:
                            metrics.model_refusals.labels("bad_announcement").inc()
                            log.error(
                                "ignoring a model announcement at %s[%d]@%d: %s", r.topic, r.partition, r.offset, exc
                            )
                            continue
                        if best is None or rec["seq"] > best["seq"]:
                            best = rec
                if best is not None:
                    await runner.apply_update(best)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("model announcements: %s; retrying in 5 s", exc)
            await asyncio.sleep(5)
        finally:
            if consumer is not None:
                await consumer.stop()
