"""Kafka client helpers shared by the workers, the operator commands and the development tools.

- topics: `topic_specs` (every topic the pipeline uses and its partition count), `ensure_topics`
  (create the missing ones, refuse a co-partitioning mismatch), `wait_for_broker`;
- records: `produce_records` (send and wait for every acknowledgement), `read_from_beginning` (an
  aiokafka consumer without a group on every partition of a topic);
- process: `stop_on_signals` (an asyncio event set by SIGTERM / SIGINT), `kafka_errors_as_runtime`
  (a kafka-python error as the one-line RuntimeError the `jump` command prints).

Clients are kafka-python (blocking: admin, tools) and aiokafka (asyncio: the workers), both built
from `Settings.kafka_python_kwargs()` / `aiokafka_kwargs()`. Tansu (the embedded development broker)
has no transactions and no idempotent producer, and its ListOffsets is wrong on batched topics, so
nothing here relies on those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import Settings


# --------------------------------------------------------------------------- topics


def topic_specs(settings: Settings) -> dict[str, int]:
    """Every topic the pipeline uses -> its partition count."""
    return {
        settings.topic_clicks: settings.partitions,
        settings.topic_rekeyed: settings.partitions,
        settings.topic_ticks: settings.partitions,  # co-partitioned: partition p's tick reaches p's owner
        settings.topic_requests: settings.partitions,
        settings.topic_predictions: settings.output_partitions,
        settings.topic_training_log: settings.output_partitions,
        settings.topic_dead_letters: settings.output_partitions,
        settings.topic_model_updates: 1,  # one partition: every worker reads every update, in order
        settings.topic_training_metrics: 1,
    }


def metadata_error(bootstrap_servers: str | list[str], timeout_s: float = 5.0, **kwargs) -> str | None:
    """None when a kafka-python metadata request to `bootstrap_servers` succeeds, else the error (one line).
    kafka-python's own connection log is muted meanwhile: a broker that is down logs a dozen lines a second."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaConfigurationError, KafkaError

    def said(e: BaseException) -> str:
        text = str(e)
        return text if text.startswith(type(e).__name__) else f"{type(e).__name__}: {text}"

    ms = int(timeout_s * 1000)
    kafka_log = logging.getLogger("kafka")
    level, kafka_log.level = kafka_log.level, logging.CRITICAL
    try:
        try:
            c = KafkaConsumer(
                bootstrap_servers=bootstrap_servers, request_timeout_ms=ms + 1000, bootstrap_timeout_ms=ms, **kwargs
            )
        except KafkaConfigurationError:
            raise
        except (KafkaError, OSError) as e:
            return said(e)
        try:
            c.topics()
            return None
        except (KafkaError, OSError) as e:
            return said(e)
        finally:
            c.close()
    finally:
        kafka_log.setLevel(level)


def wait_for_broker(settings: Settings, timeout_s: float | None = None, say=None, every_s: float = 5.0) -> None:
    """Block until the cluster answers a metadata request (default wait: JUMP_BROKER_WAIT_S).

    `say(line)`, when given, hears which servers are tried at once and a line every `every_s` while none
    answers. RuntimeError after the wait, one line naming KAFKA_BOOTSTRAP_SERVERS (the CLI's exit 2)."""
    timeout_s = settings.broker_wait_s if timeout_s is None else timeout_s
    servers = settings.bootstrap_servers
    if say:
        say(f"connecting to Kafka at {servers} (KAFKA_BOOTSTRAP_SERVERS)")
    start = time.monotonic()
    next_say = start + every_s
    while True:
        last = metadata_error(timeout_s=max(0.5, min(every_s, timeout_s / 2)), **settings.kafka_python_kwargs())
        if last is None:
            return
        now = time.monotonic()
        if now - start >= timeout_s:
            raise RuntimeError(
                f"no Kafka broker answered at {servers} within {timeout_s:g} s: set KAFKA_BOOTSTRAP_SERVERS to a "
                f"reachable broker (JUMP_BROKER_WAIT_S sets the wait); last error: {last}"
            )
        if say and now >= next_say:
            waited = f"{now - start:.0f} of {timeout_s:g} s"
            say(f"waiting for Kafka at {servers} (KAFKA_BOOTSTRAP_SERVERS): {last} [{waited}]")
            next_say = now + every_s
        time.sleep(min(0.5, max(0.0, start + timeout_s - now)))


def _partition_counts(admin, names: list[str]) -> dict[str, int]:
    """name -> partition count of the existing topics among `names` (via DescribeTopics/Metadata)."""
    out = {}
    for t in admin.describe_topics(names):
        err = t.get("error_code", 0)
        if err:
            continue
        out[t.get("name", t.get("topic"))] = len(t.get("partitions") or [])  # "topic" in kafka-python < 3
    return out


def ensure_topics(settings: Settings, specs: dict[str, int] | None = None, timeout_s: float = 30) -> dict[str, str]:
    """Create the missing topics (idempotent); name -> "created" | "exists".

    Raises ValueError when an existing topic's partition count differs from the spec.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    specs = topic_specs(settings) if specs is None else dict(specs)
    for name, n in specs.items():
        if not name or n < 1:
            raise ValueError(f"topic {name!r}: partition count must be >= 1, got {n}")
    deadline = time.monotonic() + timeout_s
    admin = None
    while admin is None:
        try:
            admin = KafkaAdminClient(
                **settings.kafka_python_kwargs(),
                request_timeout_ms=int(timeout_s * 1000),
                client_id=f"{settings.app_id}-admin",
            )
        except (KafkaError, OSError) as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot reach Kafka at {settings.bootstrap_servers}: {e}") from None
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        result: dict[str, str] = {}
        missing = [n for n in specs if n not in existing]
        for name in missing:
            try:
                spec = {"num_partitions": specs[name], "replication_factor": settings.replication_factor}
                if name == settings.topic_ticks:
                    spec["configs"] = TOPIC_CONFIGS["ticks"]
                admin.create_topics({name: spec}, timeout_ms=int(timeout_s * 1000))
                result[name] = "created"
            except TopicAlreadyExistsError:  # created concurrently by another worker
                result[name] = "exists"
        for name in specs:
            result.setdefault(name, "exists")
        to_check = [n for n, r in result.items() if r == "exists"]
        if to_check:
            counts = {}
            while True:
                counts = _partition_counts(admin, to_check)
                if len(counts) == len(to_check) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)  # a concurrently created topic may not be visible yet
            for name in to_check:
                if name not in counts:
                    raise RuntimeError(f"topic {name} exists but its metadata is unavailable")
                if counts[name] != specs[name]:
                    raise ValueError(
                        f"topic {name} has {counts[name]} partitions, expected {specs[name]} (co-partitioning)"
                    )
        return {name: result[name] for name in specs}
    finally:
        admin.close()


#: topic configs set when the pipeline creates a topic (Kafka; the embedded broker ignores them):
#: a tick only matters to the worker that reads it within seconds
TOPIC_CONFIGS = {"ticks": {"retention.ms": str(3600 * 1000)}}


# --------------------------------------------------------------------------- producers


async def broker_grants_producer_ids(settings: Settings, timeout_s: float = 10.0) -> bool:
    """True when the cluster answers InitProducerId (what an idempotent producer needs): Kafka does,
    the embedded Tansu broker answers UnknownError (and an idempotent aiokafka producer then fails
    its first send)."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.transaction import InitProducerIdRequest

    client = AIOKafkaClient(**settings.aiokafka_kwargs())
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        node = client.get_random_node()
        resp = await asyncio.wait_for(client.send(node, InitProducerIdRequest(None, 60_000)), timeout_s)
        return resp.error_code == 0
    except Exception as e:
        logging.getLogger("jump.kafka").info("InitProducerId refused (%s): idempotent producers off", e)
        return False
    finally:
        await client.close()


async def producer_options(settings: Settings) -> dict:
    """acks and enable_idempotence of every worker's aiokafka producer (JUMP_PRODUCER_ACKS,
    JUMP_PRODUCER_IDEMPOTENCE; auto: on when the broker grants producer ids and acks=all)."""
    mode = settings.producer_idempotence
    if mode == "auto":
        idempotent = settings.producer_acks == "all" and await broker_grants_producer_ids(settings)
    else:
        idempotent = mode == "true"
    logging.getLogger("jump.kafka").info(
        "producer: acks=%s, idempotence %s (JUMP_PRODUCER_ACKS, JUMP_PRODUCER_IDEMPOTENCE=%s)",
        settings.producer_acks,
        "on" if idempotent else "off",
        mode,
    )
    return {"acks": settings.acks, "enable_idempotence": idempotent}


async def start_from_now(settings: Settings, group_id: str, topic: str) -> dict[int, int]:
    """JUMP_AUTO_OFFSET_RESET=latest: commit, for `group_id`, the end offset of every partition of
    `topic` the group has no committed offset for (what `kafka-consumer-groups --reset-offsets
    --to-latest` does), so that a first deployment starts from now while the consumers themselves
    keep `earliest` (an internal topic, or a partition the group already read, never skips a record).
    End offsets are the larger of ListOffsets and a fetch's high watermark (ListOffsets is too low on
    the embedded broker). Returns partition -> committed offset, for the partitions it committed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from .faust_compat import fetch_highwaters

    consumer = AIOKafkaConsumer(group_id=group_id, enable_auto_commit=False, **settings.aiokafka_kwargs())
    await consumer.start()
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if not parts:
            await consumer.topics()
            parts = sorted(consumer.partitions_for_topic(topic) or ())
        fresh = [TopicPartition(topic, p) for p in parts]
        fresh = [tp for tp in fresh if await consumer.committed(tp) is None]
        if not fresh:
            return {}
        reported = await consumer.end_offsets(fresh)
        ends = await fetch_highwaters(settings.aiokafka_kwargs(), fresh, reported)
        consumer.assign(fresh)
        await consumer.commit({tp: OffsetAndMetadata(ends[tp], "") for tp in fresh})
        return {tp.partition: ends[tp] for tp in fresh}
    finally:
        await consumer.stop()


async def adopt_offsets(settings: Settings, old_group: str, new_group: str, topic: str) -> dict[int, int]:
    """Copy `old_group`'s committed offsets on `topic` to `new_group` for the partitions `new_group`
    has none for (a renamed consumer group resumes where the old one stopped instead of reading the
    topic again). Returns partition -> adopted offset."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    kw = settings.aiokafka_kwargs()
    old = AIOKafkaConsumer(group_id=old_group, enable_auto_commit=False, **kw)
    new = AIOKafkaConsumer(group_id=new_group, enable_auto_commit=False, **kw)
    await old.start()
    await new.start()
    try:
        await new.topics()
        tps = [TopicPartition(topic, p) for p in sorted(new.partitions_for_topic(topic) or ())]
        adopt = {}
        for tp in tps:
            if await new.committed(tp) is None and (offset := await old.committed(tp)) is not None:
                adopt[tp] = offset
        if adopt:
            new.assign(list(adopt))
            await new.commit({tp: OffsetAndMetadata(o, "") for tp, o in adopt.items()})
        return {tp.partition: o for tp, o in adopt.items()}
    finally:
        await old.stop()
        await new.stop()


# --------------------------------------------------------------------------- records


def produce_records(settings: Settings, topic: str, records, partition: int | None = None) -> None:
    """Send (key, value) byte pairs and wait for every acknowledgement (no idempotent producer:
    Tansu lacks it)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        **settings.kafka_python_kwargs(),
        enable_idempotence=False,
        acks=1,
        linger_ms=5,
        max_in_flight_requests_per_connection=1,
    )
    try:
        futures = [producer.send(topic, key=k, value=v, partition=partition) for k, v in records]
        producer.flush()
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close()


async def read_from_beginning(settings: Settings, topic: str):
    """A started aiokafka consumer without a group, assigned every partition of `topic` from the
    beginning; returns (consumer, assigned partitions). RuntimeError if the topic does not exist."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **settings.aiokafka_kwargs(),
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if not parts:
            raise RuntimeError(f"topic {topic} does not exist (create it, or JUMP_CREATE_TOPICS=true)")
        assigned = [TopicPartition(topic, p) for p in parts]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        return consumer, assigned
    except BaseException:
        await consumer.stop()
        raise


# --------------------------------------------------------------------------- process


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """An event set by SIGTERM / SIGINT (where the loop supports signal handlers)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def kafka_errors_as_runtime(fn):
    """Run fn(); a kafka-python error becomes a one-line RuntimeError (printed by `jump`)."""
    from kafka.errors import KafkaError

    try:
        return fn()
    except KafkaError as e:
        raise RuntimeError(f"Kafka error: {type(e).__name__}: {e}") from None
