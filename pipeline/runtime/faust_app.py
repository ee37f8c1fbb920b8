"""The Faust apps: the sessionizer (clicks -> requests, training log, dead letters) and the
inference worker's Faust runtime (requests -> predictions; JUMP_INFERENCE_RUNTIME=faust, the default
aiokafka runtime is runtime.inference.run_direct), and `run_worker`, which runs one in the foreground.

The sessionizer's rules are core.sessionizer's, the inference worker's per-batch work
core.inference's (this module only moves records between them and Kafka). Both agents take
micro-batches (`stream.take_events`) and write records with the aiokafka producer directly (values
are already msgpack bytes), which keeps Faust's per-event cost off the hot path. Whatever they need
of Faust's and aiokafka's private internals goes through faust_compat, which also refuses to build
an app on untested faust-streaming / aiokafka versions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
import time
from pathlib import Path

import faust
from faust.sensors import Monitor

from .. import codec, logs, metrics
from ..config import Settings
from ..core.sessionizer import TICKS, Message, SessionizerCore
from . import faust_compat
from .batches import KeyPartitioner, RecordBatches
from .kafka import ensure_topics, producer_options, start_from_now

log = logging.getLogger("jump.pipeline")


def crash_only(role: str):
    """An agent body that fails ends the process (exit status 70), so its supervisor restarts it.

    Faust logs a crashed agent and keeps the worker running without it: the process looks alive (and
    its liveness probe passed) while nothing is consumed any more. Exiting instead is what a SIGKILL
    does, which the crash tests cover: uncommitted input is consumed again (at-least-once)."""

    def wrap(body):
        @functools.wraps(body)
        async def agent(stream):
            try:
                await body(stream)
            except Exception:
                log.critical(
                    "%s: the agent failed; exiting so the supervisor restarts the worker (input not yet "
                    "committed is consumed again)",
                    role,
                    exc_info=True,
                )
                metrics.set_ready(False)
                logging.shutdown()
                os._exit(70)

        return agent

    return wrap


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-message and per-event bookkeeping (counters, timestamps and
    per-stream dictionaries, ~4 calls per record). Its only reader is Faust's web server, which the
    workers turn off; they export their own Prometheus metrics. Everything else is the Monitor's."""

    def on_message_in(self, tp, offset, message) -> None:
        pass

    def on_stream_event_in(self, tp, offset, stream, event):
        return None

    def on_stream_event_out(self, tp, offset, stream, event, state=None) -> None:
        pass

    def on_message_out(self, tp, offset, message) -> None:
        pass


class PipelineApp(faust.App):
    """A Faust app that prepares its worker when it starts, before its producer and consumer do
    (mode's `on_first_start`): it creates the pipeline's topics (JUMP_CREATE_TOPICS), gives the
    producer its acks and idempotence (JUMP_PRODUCER_ACKS, JUMP_PRODUCER_IDEMPOTENCE), lets the
    role do its own preparation (`prepare`: the sessionizer's JUMP_AUTO_OFFSET_RESET=latest) and
    serves the metrics. `jump sessionizer` and `faust -A pipeline.sessionizer worker` therefore
    start the same way, while `faust -A ... tables|agents` only load the app."""

    jump_settings: Settings | None = None
    jump_role = ""  # sessionizer | inference
    jump_prepare = None  # async (app) -> None, the role's own preparation

    async def on_first_start(self) -> None:
        await super().on_first_start()
        s = self.jump_settings
        if s is None:
            return
        if s.log_format == "json" and not logs.json_enabled():
            logs.setup(s, self.jump_role)  # under `faust -A ... worker` (Faust's CLI set up text logging)
        if s.create_topics:
            await asyncio.get_running_loop().run_in_executor(None, ensure_topics, s)
        options = await producer_options(s)
        faust_compat.set_producer_options(self, options)
        if self.jump_prepare is not None:
            await self.jump_prepare(self)
        metrics.serve(s.metrics_port, s.metrics_addr, s.health_stale_s)


def base_app(settings: Settings, role: str, prepare: bool = True) -> faust.App:
    """A Faust app with the pipeline's settings (also the stream benchmark's pass-through app, with
    `prepare=False`: no topics, producer options or metrics of the pipeline's).

    Refuses (RuntimeError) to build one on faust-streaming / aiokafka versions other than the tested
    ones: see faust_compat."""
    faust_compat.check_versions()
    app_id = f"{settings.app_id}-{role}"
    datadir = settings.data_dir or str(Path(tempfile.gettempdir()) / "jump-stream" / app_id)
    app = PipelineApp(
        app_id,
        broker=[f"kafka://{h}" for h in settings.bootstrap_hosts],
        broker_credentials=settings.faust_broker_credentials(),
        store="memory://",  # state is rebuilt from the changelog topic at start-up
        datadir=datadir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        broker_session_timeout=10,
        broker_heartbeat_interval=3,
        broker_commit_interval=1.0,
        # earliest for every topic: JUMP_AUTO_OFFSET_RESET=latest commits the clicks partitions' ends
        # before the first start instead (kafka.start_from_now), so internal topics never skip a record
        consumer_auto_offset_reset="earliest",
        producer_acks=-1 if settings.producer_acks == "all" else int(settings.producer_acks),
        stream_buffer_maxsize=16384,
        broker_max_poll_records=2000,
        producer_linger_ms=2,
        producer_max_batch_size=1 << 18,
        web_enabled=False,
        processing_guarantee="at_least_once",
        Monitor=QuietMonitor,
    )
    faust_compat.configure(app, fetch_max_wait_ms=settings.fetch_max_wait_ms, kafka_kwargs=settings.aiokafka_kwargs())
    app.jump_settings = settings if prepare else None
    app.jump_role = role
    # Faust creates its data directory without its parents: on a fresh machine the default
    # ($TMPDIR/jump-stream/<app>) has none, and the worker died at start-up (FileNotFoundError)
    Path(app.conf.datadir).parent.mkdir(parents=True, exist_ok=True)

    @app.timer(interval=min(5.0, settings.health_stale_s / 4))
    async def _heartbeat():  # /healthz: the worker's event loop is alive
        metrics.beat()

    return app


def _update_lag(app: faust.App, topics: set[str], processed: dict) -> None:
    """Consumer lag: records not yet processed by the agent, from the fetch high watermark (ListOffsets
    is wrong on Tansu, see README) minus the last offset the agent processed (`processed`, per
    (topic, partition)). Faust fetches ahead into its stream buffer, so the last offset it read
    (`faust_compat.read_offset`) would hide that backlog; it stands in only for a partition the agent
    has not processed a record of yet."""
    try:
        consumer = app.consumer
        total = 0
        for tp in consumer.assignment():
            if tp.topic not in topics:
                continue
            hw = consumer.highwater(tp)
            pos = processed.get((tp.topic, tp.partition))
            if pos is None:
                pos = faust_compat.read_offset(consumer, tp)
            if hw is not None and pos is not None:
                total += max(0, hw - (pos + 1))
        metrics.consumer_lag.labels(app.conf.id).set(total)
    except Exception:  # lag is best effort; never break the hot path for it
        pass


def _processed(events, into: dict) -> None:
    """The last offset of each (topic, partition) in a batch of events, into `into`."""
    for e in events:
        m = e.message
        into[(m.topic, m.partition)] = m.offset


def create_sessionizer_app(settings: Settings) -> faust.App:
    s = settings
    app = base_app(s, "sessionizer")
    # one agent on the three co-partitioned topics: Faust assigns partition p of each to one worker
    source = app.topic(
        s.topic_clicks,
        s.topic_rekeyed,
        s.topic_ticks,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=s.partitions,
    )
    table = app.Table(
        "sessions",
        partitions=s.partitions,
        key_type=bytes,
        value_type=bytes,  # raw msgpack (core.sessionizer.Session / Meta)
        help="open sessions by session key, and each partition's meta record (stream time, applied offsets)",
    )
    topic_index = {s.topic_clicks: 0, s.topic_rekeyed: 1, s.topic_ticks: TICKS}
    core = SessionizerCore(s)
    partitioner = KeyPartitioner()

    async def prepare(app_) -> None:
        if s.auto_offset_reset == "latest":
            committed = await start_from_now(s, app_.conf.id, s.topic_clicks)
            if committed:
                log.info(
                    "JUMP_AUTO_OFFSET_RESET=latest: %s partitions %s start from now (offsets %s)",
                    s.topic_clicks,
                    sorted(committed),
                    [committed[p] for p in sorted(committed)],
                )

    app.jump_prepare = prepare
    state = {
        "loaded_generation": -1,
        "generation": 0,
        "owned": set(),
        "assigned": set(),
        "agent_started": False,
        "ready": False,
        "processed": {},  # (topic, partition) -> last offset processed, for the lag
    }

    @app.on_partitions_assigned.connect
    async def _assigned(app_, assigned, **kwargs):
        state["assigned"] = {tp.partition for tp in assigned if tp.topic in topic_index}
        state["generation"] += 1
        state["processed"] = {}

    @app.timer(interval=0.5)
    async def _readiness():  # /readyz: 200 only while the Table is recovered (faust_compat.table_recovered)
        ready = state["agent_started"] and faust_compat.table_recovered(app)
        if ready != state["ready"]:
            log.info("sessionizer %s", "ready: the Table is recovered" if ready else "not ready: recovering the Table")
            state["ready"] = ready
        metrics.set_ready(ready)

    changelog = faust_compat.changelog_topic(table)

    async def write_changelog(batches: RecordBatches, out) -> None:
        """State, then meta, then deletions. A partition's records that fit one record batch are one
        atomic append (all or none: the order cannot be broken by a failed write), in one round trip;
        otherwise each step is delivered before the next is sent."""
        steps = [
            [(p, key, sess.pack()) for key, (p, sess) in out.state.items()],
            [(p, key, raw) for p, (key, raw) in out.meta.items()],
            [(p, key, None) for key, p in out.deletes.items()],
        ]
        one = True
        for step in steps:
            for p, key, raw in step:
                one = batches.add(changelog, p, key, raw) and one
        if not one:  # too large for one batch per partition: three steps, each delivered first
            batches = RecordBatches(batches.producer)
            for step in steps:
                for p, key, raw in step:
                    batches.add(changelog, p, key, raw)
                await batches.deliver()
        else:
            await batches.deliver()
        for step in steps:
            for _, key, raw in step:
                faust_compat.mirror_table(table, key, raw)

    @app.agent(source)
    @crash_only("sessionizer")
    async def sessionize(stream):
        producer = faust_compat.kafka_producer(app)
        await partitioner.prime(producer, (s.topic_training_log, s.topic_dead_letters))
        state["agent_started"] = True
        async for events in stream.take_events(s.sessionizer_batch, within=s.sessionizer_wait_s):
            t0 = time.perf_counter()
            if state["loaded_generation"] != state["generation"]:
                # partitions this process kept through the rebalance keep their in-memory state
                core.load(list(table.data.items()), keep=state["owned"] & state["assigned"])
                state["owned"] = set(state["assigned"])
                state["loaded_generation"] = state["generation"]
            msgs = [
                Message(topic_index[m.topic], m.partition, m.offset, m.key, m.value, m.timestamp)
                for m in (e.message for e in events)
            ]
            out = core.process(msgs)
            # 1. outputs first, delivery awaited: a persisted state never hides a lost output
            batches = RecordBatches(producer)
            for p, k, v in out.requests:
                batches.add(s.topic_requests, p, k, v)
            for topic, records in ((s.topic_training_log, out.training_log), (s.topic_dead_letters, out.dead_letters)):
                for h, k, v in records:  # keyed records in the key's partition (Kafka's default partitioner)
                    batches.add(topic, partitioner(producer, topic, k), k, v, h)
            futures = await batches.send()
            for _, k, v in out.rekeyed:  # the partitioner picks the session key's partition
                futures.append(await producer.send(s.topic_rekeyed, v, k))
            if futures:
                await asyncio.gather(*futures)
            # 2. then the state, 3. then each partition's meta record, 4. then the closed sessions'
            # deletions (see "Durability" in pipeline/core/sessionizer.py): changelog records of the
            # key's own partition, mirrored in the Table's store.
            await write_changelog(batches, out)
            metrics.record_sessionizer_batch(out)
            metrics.open_sessions.set(core.open_sessions)
            if core.meta:
                metrics.stream_time.set(max(m.stream_time for m in core.meta.values()))
            metrics.batch_seconds.observe(time.perf_counter() - t0)
            _processed(events, state["processed"])
            _update_lag(app, {s.topic_clicks, s.topic_rekeyed}, state["processed"])

    @app.timer(interval=s.tick_interval_s)
    async def tick():
        # The idle fallback must reach the agent as data (Table writes happen only there): one tick
        # per partition of the internal ticks topic, co-partitioned with clicks (nothing is written
        # to clicks, the producers' topic).
        value = codec.encode("tick", {"tick": True, "wall_ts": time.time()})
        for p in range(s.partitions):
            await app.producer.send(s.topic_ticks, codec.TICK_KEY, value, p, None, None)

    return app


def create_inference_app(settings: Settings, engine=None) -> faust.App:
    """The GPU worker on Faust: micro-batches of requests -> JUMP -> predictions (the per-batch work
    is core.inference.InferenceRunner's; runtime.inference has the same worker on bare aiokafka)."""
    from ..core.inference import InferenceRunner
    from .inference import watch_updates

    s = settings
    app = base_app(s, "inference")
    source = app.topic(
        s.topic_requests,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=s.partitions,
    )
    runner = InferenceRunner(s, engine)

    if s.reload_check_s > 0:

        @app.timer(interval=s.reload_check_s)
        async def reload_checkpoint():
            await runner.maybe_reload()

    @app.task
    async def follow_model_updates():
        await watch_updates(s, runner)

    @app.agent(source)
    @crash_only("inference")
    async def infer(stream):
        producer = app.producer

        async def send(topic, key, value, headers):  # partition: the key's (default partitioner)
            await producer.send(topic, key, value, None, None, headers)

        await runner.wait_for_model()
        metrics.set_ready(True)
        processed: dict = {}  # (topic, partition) -> last offset processed, for the lag
        async for events in stream.take_events(s.max_batch, within=s.max_wait_s):
            runner.swap()  # a staged model serves from this batch on
            await runner.handle(
                [
                    codec.Msg(
                        e.message.topic,
                        e.message.partition,
                        e.message.offset,
                        e.message.key,
                        e.message.value,
                        e.message.timestamp,
                    )
                    for e in events
                ],
                send,
            )
            _processed(events, processed)
            _update_lag(app, {s.topic_requests}, processed)

    return app


def run_worker(app: faust.App, settings: Settings) -> None:
    """Run a Faust worker in the foreground (PipelineApp.on_first_start prepares it)."""
    worker = faust.Worker(
        app, loglevel=settings.log_level, redirect_stdouts=False, **logs.faust_worker_options(settings)
    )
    if settings.log_format == "json":
        worker.spinner = None  # its escape codes are no log record; Faust logs "Ready" instead
    worker.execute_from_commandline()
