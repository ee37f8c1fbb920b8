"""The trainer process (`jump trainer`): core.trainer.TrainerCore on Kafka.

Reads every partition of jump-training-log from the beginning (no consumer group: the window is
rebuilt from the topic at start-up), hands each fetch to the core (its dead letters are sent at
once), starts a due training run in a daemon thread while consumption continues, and when a run
ends sends its jump-training-metrics record and, for a promoted candidate, its announcement on
jump-model-updates (both topics have one partition).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from .. import codec, metrics
from ..codec import Msg
from ..config import Settings
from ..core.trainer import TrainerCore
from .kafka import producer_options, read_from_beginning, stop_on_signals

log = logging.getLogger("jump.trainer")


def _in_thread(fn, *args) -> asyncio.Future:
    """Run fn in a daemon thread (a training run must not keep a stopping process alive)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def target():
        try:
            result = fn(*args)
        except BaseException as exc:  # bound now: `exc` is unset once the except block ends
            loop.call_soon_threadsafe(lambda e=exc: fut.done() or fut.set_exception(e))
        else:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(result))

    threading.Thread(target=target, name="jump-training-run", daemon=True).start()
    return fut


async def run_trainer(settings: Settings, stop: asyncio.Event | None = None) -> None:
    from aiokafka import AIOKafkaProducer

    s = settings
    core = TrainerCore(s)
    await asyncio.get_running_loop().run_in_executor(None, core.load_serving)
    stop = stop_on_signals(stop)
    options = await producer_options(s)
    producer = AIOKafkaProducer(**options, **s.aiokafka_kwargs())
    await producer.start()
    consumer = None
    try:
        consumer, assigned = await read_from_beginning(s, s.topic_training_log)
        metrics.set_ready(True)
        log.info(
            "trainer reading %s (%d partitions) into a window of %d sessions",
            s.topic_training_log,
            len(assigned),
            s.trainer_window_sessions,
        )
        running = None
        while not stop.is_set():
            metrics.beat()
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            msgs = [
                Msg(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp / 1000.0)
                for records in batches.values()
                for r in records
            ]
            for topic, key, value, headers in core.ingest(msgs):
                await producer.send(topic, value=value, key=key, headers=headers)
            lag = 0
            for tp in assigned:
                hw = consumer.highwater(tp)
                if hw is not None:
                    lag += max(0, hw - await consumer.position(tp))
            metrics.consumer_lag.labels(f"{s.app_id}-trainer").set(lag)
            if running is None and (trigger := core.due()):
                running = _in_thread(core.run, trigger)
            if running is not None and running.done():
                update, rec = running.result()
                running = None
                await producer.send(
                    s.topic_training_metrics,
                    key=rec["run_id"].encode(),
                    value=codec.encode("training_metrics", rec),
                    partition=0,
                )
                if update is not None:
                    await producer.send(
                        s.topic_model_updates,
                        key=update["version"].encode(),
                        value=codec.encode("model_update", update),
                        partition=0,
                    )
                await producer.flush()
    finally:
        if consumer is not None:
            await consumer.stop()
        await producer.stop()
