"""pipeline.runtime.faust_compat: the version guard, and one test per patch or private access of
faust-streaming / aiokafka that fails when the internal it relies on changes shape. No broker.

What each test pins down:
- `_create_worker_consumer` (patched): its signature, that Faust still hard-codes the 1500 ms fetch
  wait (the reason for the patch), and that the patched one gives a configured app's consumer the
  app's fetch wait;
- aiokafka's `_fetch_max_wait_ms`: the constructor stores `fetch_max_wait_ms` there and `start()`
  hands it to the Fetcher (so setting it before start is as good as the constructor argument);
- `_highwaters` (patched): its signature, that Faust's `Consumer.highwaters` goes through it, and
  that the patched one takes the larger of ListOffsets and the fetch high watermark;
- the Table's store and changelog topic, and Faust's raw serialisation of a bytes Table's keys
  and values (the sessionizer writes its changelog records itself, `mirror_table`), and the
  aiokafka producer under Faust's (`kafka_producer`);
- `Consumer._read_offset`: the mapping of the last offset handed to the streams;
- `Consumer.perform_seek` (patched): that Faust's recovery still seeks, then clears the stream
  queues (`flow_control.resume()`), then resumes the consumer's flow, and that the patched seek
  stops the flow before it seeks (faust-streaming/faust#596);
- `Consumer.wait_first` (patched): that the drain loop still races each record's delivery against
  the flow suspension with it, and that the eager one returns a delivery that does not wait with
  no task, resumes one that waits in a task raced as before (cancelled by a suspension), lets
  errors through, and leaves a signalled suspension to the original.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
import sys
import weakref
from pathlib import Path
from types import SimpleNamespace

import faust
import faust.exceptions
import faust.streams
import pytest
from faust.transport.drivers import aiokafka as driver

from pipeline.config import Settings
from pipeline.runtime import faust_compat
from pipeline.runtime.faust_app import PipelineApp, base_app

ROOT = Path(__file__).resolve().parents[3]
Thread = driver.AIOKafkaConsumerThread


def settings(**kw) -> Settings:
    return Settings.from_env(env={}, bootstrap_servers="127.0.0.1:1", app_id="jump-compat-test", **kw)


class Event:
    """What Faust's Table reads of an event: message.topic, message.partition (weak-referenceable)."""

    def __init__(self, partition: int, topic: str = "clicks"):
        self.message = SimpleNamespace(topic=topic, partition=partition)


class AnApp:
    """A stand-in key for the per-app settings (weak-referenceable, hashable)."""


# --------------------------------------------------------------------------- the version guard


def test_tested_versions_are_the_pins_of_requirements_txt():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert {name: pins[name] for name in faust_compat.TESTED} == faust_compat.TESTED


def test_the_installed_versions_are_the_tested_ones():
    assert faust_compat.installed_versions() == faust_compat.TESTED
    faust_compat.check_versions()


@pytest.mark.parametrize("name, other", [("faust-streaming", "0.16.0"), ("aiokafka", "0.13.1")])
def test_another_version_is_refused_with_one_clear_line(monkeypatch, name, other):
    monkeypatch.setattr(faust_compat, "installed_versions", lambda: {**faust_compat.TESTED, name: other})
    with pytest.raises(RuntimeError) as e:
        faust_compat.check_versions()
    msg = str(e.value)
    assert "\n" not in msg
    assert f"{name} {other} is installed, tested with {faust_compat.TESTED[name]}" in msg
    assert f"{name}=={faust_compat.TESTED[name]}" in msg and "requirements.txt" in msg
    with pytest.raises(RuntimeError, match=re.escape(f"{name} {other} is installed")):
        base_app(settings(), "refused")  # no Faust app is built on it


def test_jump_sessionizer_refuses_another_faust_version_in_one_stderr_line(monkeypatch, capsys):
    from pipeline import cli

    monkeypatch.setattr(
        faust_compat, "installed_versions", lambda: {**faust_compat.TESTED, "faust-streaming": "0.16.0"}
    )
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cmd_sessionizer rewrites it for faust.Worker
    for var, value in (
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ("JUMP_CREATE_TOPICS", "false"),
        ("JUMP_METRICS_PORT", "0"),
    ):
        monkeypatch.setenv(var, value)
    assert cli.main(["sessionizer"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("jump sessionizer: error: faust-streaming 0.16.0 is installed, tested with 0.15.3")


# --------------------------------------------------------------------------- installation


def test_patches_are_installed_once_and_idempotently():
    from faust.transport.consumer import Consumer as FaustConsumer

    faust_compat.install()
    create, highwaters, seek = Thread._create_worker_consumer, Thread._highwaters, FaustConsumer.perform_seek
    faust_compat.install()
    base_app(settings(), "twice")
    assert Thread._create_worker_consumer is create and Thread._highwaters is highwaters
    assert FaustConsumer.perform_seek is seek
    for patched in (create, highwaters, seek):
        assert patched.jump_patched
        assert not getattr(patched.jump_original, "jump_patched", False)  # Faust's own, never a patch of a patch


def test_settings_are_kept_per_app_not_on_the_app():
    a, b = base_app(settings(fetch_max_wait_ms=77), "a"), base_app(settings(fetch_max_wait_ms=33), "b")
    assert faust_compat.options(a).fetch_max_wait_ms == 77 and faust_compat.options(b).fetch_max_wait_ms == 33
    assert faust_compat.options(a).kafka_kwargs["bootstrap_servers"] == ["127.0.0.1:1"]
    # faust_compat keeps nothing on the app (PipelineApp's own declared attributes aside)
    assert not [k for k in vars(a) if k.startswith("jump") and not hasattr(PipelineApp, k)]
    assert isinstance(a, PipelineApp) and a.jump_settings.fetch_max_wait_ms == 77
    key = AnApp()
    faust_compat.configure(key, fetch_max_wait_ms=5, kafka_kwargs=None)
    assert key in faust_compat._options
    ref = weakref.ref(key)
    del key
    gc.collect()
    # held weakly: a dropped app takes its settings along (counting entries is racy: other tests'
    # apps may be collected at any allocation)
    assert ref() is None


# --------------------------------------------------------------------------- 1. fetch wait


def test_create_worker_consumer_keeps_its_shape_and_its_hard_coded_wait():
    original = Thread._create_worker_consumer.jump_original
    assert list(inspect.signature(original).parameters) == ["self", "transport"]
    assert not inspect.iscoroutinefunction(original)
    # the reason for the patch: drop it when Faust takes the fetch wait from its configuration
    assert "fetch_max_wait_ms=1500" in inspect.getsource(original)


def test_aiokafka_stores_fetch_max_wait_ms_privately_and_start_hands_it_to_the_fetcher(monkeypatch):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.consumer import consumer as consumer_module

    class Stop(Exception):
        pass

    got = {}

    def fetcher(*args, **kwargs):
        got.update(kwargs)
        raise Stop

    async def nothing(*args, **kwargs):
        return None

    async def main():
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=123)
        assert consumer._fetch_max_wait_ms == 123
        faust_compat.set_fetch_max_wait(consumer, 42)
        monkeypatch.setattr(consumer._client, "bootstrap", nothing)
        monkeypatch.setattr(consumer, "_wait_topics", nothing)
        monkeypatch.setattr(consumer_module, "Fetcher", fetcher)
        with pytest.raises(Stop):
            await consumer.start()
        await consumer.stop()

    asyncio.run(main())
    assert got["fetch_max_wait_ms"] == 42


@pytest.mark.parametrize("configured, want", [(77, 77), (None, 1500)])
def test_the_patched_worker_consumer_gets_the_apps_fetch_wait(configured, want):
    app = base_app(settings(fetch_max_wait_ms=configured or 50), "fetch-wait")
    if configured is None:
        faust_compat._options.pop(app)  # an app nobody configured: Faust's default

    async def main():
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(main()) == want


# --------------------------------------------------------------------------- 2. recovery end offsets


def test_highwaters_keeps_its_shape_and_is_what_consumer_highwaters_calls():
    original = Thread._highwaters.jump_original
    assert list(inspect.signature(original).parameters) == ["self", "partitions"]
    assert inspect.iscoroutinefunction(original) and inspect.iscoroutinefunction(Thread._highwaters)
    assert "self._highwaters" in inspect.getsource(Thread.highwaters)
    assert "self._thread.highwaters" in inspect.getsource(driver.Consumer.highwaters)


class _ListOffsets:
    """aiokafka's consumer as Faust's `_highwaters` uses it: end_offsets (ListOffsets)."""

    async def end_offsets(self, partitions):
        return dict.fromkeys(partitions, 3)


def _thread(app):
    thread = SimpleNamespace(app=app, consumer=SimpleNamespace(in_transaction=False))
    thread._ensure_consumer = lambda: _ListOffsets()
    return thread


@pytest.mark.parametrize("kafka_kwargs, want", [({"bootstrap_servers": ["127.0.0.1:1"]}, 7), (None, 3)])
def test_the_patched_highwaters_takes_the_larger_of_list_offsets_and_the_fetch(monkeypatch, kafka_kwargs, want):
    calls = []

    async def fetch(kwargs, partitions, reported):
        calls.append((kwargs, partitions, reported))
        return {tp: max(reported[tp], 7) for tp in partitions}

    monkeypatch.setattr(faust_compat, "fetch_highwaters", fetch)
    app = AnApp()
    faust_compat.configure(app, fetch_max_wait_ms=None, kafka_kwargs=kafka_kwargs)
    tp = faust.types.TP("changelog", 0)
    assert asyncio.run(Thread._highwaters(_thread(app), [tp])) == {tp: want}
    assert calls == ([(kafka_kwargs, [tp], {tp: 3})] if kafka_kwargs else [])


def test_fetch_highwaters_falls_back_to_list_offsets_when_the_fetch_fails():
    from pipeline.devtools.broker import free_port

    tp = faust.types.TP("changelog", 1)
    got = asyncio.run(faust_compat.fetch_highwaters({"bootstrap_servers": [f"127.0.0.1:{free_port()}"]}, [tp], {tp: 5}))
    assert got == {tp: 5}


# --------------------------------------------------------------------------- 3. Table writes


def test_a_mirrored_write_is_what_a_table_write_puts_in_the_store_and_the_changelog_takes_raw_bytes():
    app = base_app(settings(), "table")
    table = app.Table("sessions", partitions=2, key_type=bytes, value_type=bytes)
    assert faust_compat.changelog_topic(table) == f"{app.conf.id}-sessions-changelog"
    faust_compat.mirror_table(table, b"k", b"v")
    assert table.data[b"k"] == b"v" and dict(table.data.items()) == {b"k": b"v"}
    faust_compat.mirror_table(table, b"k", None)
    faust_compat.mirror_table(table, b"absent", None)  # deleting a missing key is no error
    assert dict(table.data.items()) == {}
    # Faust serialises a bytes key and value of this Table as themselves, so the records the
    # sessionizer writes itself are the bytes Faust's own write would send (and recovery reads)
    reg = app.serializers
    assert reg.dumps_key(table.key_type, b"\x00k", serializer=table.key_serializer) == b"\x00k"
    assert reg.dumps_value(table.value_type, b"\x93v", serializer=table.value_serializer) == b"\x93v"
    with pytest.raises(faust.exceptions.NotReady):
        faust_compat.kafka_producer(app)  # the producer starts with the worker


# --------------------------------------------------------------------------- 4. consumer lag


def test_faust_consumer_keeps_the_last_read_offset_per_partition():
    app = base_app(settings(), "lag")
    consumer = app.consumer
    assert isinstance(consumer, driver.Consumer)
    from faust.transport.consumer import Consumer as FaustConsumer

    assert "_read_offset" in FaustConsumer.__annotations__
    tp = faust.types.TP("requests", 0)
    assert faust_compat.read_offset(consumer, tp) is None
    consumer._read_offset[tp] = 41  # as Faust's fetch loop sets it
    assert faust_compat.read_offset(consumer, tp) == 41
    assert "set_read_offset(tp, offset)" in inspect.getsource(type(consumer)._drain_messages)


def test_a_failing_agent_ends_the_process_so_the_supervisor_restarts_it(monkeypatch, caplog):
    """Faust would log a crashed agent and keep a worker that consumes nothing; crash_only exits (70)."""
    import asyncio

    from pipeline import metrics
    from pipeline.runtime import faust_app

    def exit_(code):
        raise SystemExit(code)

    monkeypatch.setattr(faust_app.os, "_exit", exit_)

    @faust_app.crash_only("sessionizer")
    async def body(stream):
        raise RuntimeError("producer refused the record")

    metrics.set_ready(True)
    with pytest.raises(SystemExit) as e:
        asyncio.run(body(None))
    assert e.value.code == 70 and not metrics.health()[1]
    assert "sessionizer: the agent failed; exiting" in caplog.text and "producer refused" in caplog.text

    @faust_app.crash_only("sessionizer")
    async def cancelled(stream):  # a normal shutdown cancels the agent: not a failure
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled(None))


# --------------------------------------------------------------------------- 5. seek, then clear, then flow


def _calls_in_order(source: str, calls: list[str]) -> bool:
    at = [source.find(c) for c in calls]
    return all(i >= 0 for i in at) and at == sorted(at)


def test_recovery_seeks_then_clears_the_queues_then_resumes_the_flow():
    """The patch relies on this order in both of Faust's resume paths: `perform_seek`, then
    `app.flow_control.resume()` (which clears every stream queue), then `consumer.resume_flow()`."""
    from faust.tables.recovery import Recovery
    from mode.utils.queues import FlowControlEvent

    assert "self.clear()" in inspect.getsource(FlowControlEvent.resume)  # resuming drops what is queued
    order = ["consumer.perform_seek()", "flow_control.resume()", "consumer.resume_flow()"]
    for resume in (Recovery.on_recovery_completed, Recovery._resume_streams):
        assert _calls_in_order(inspect.getsource(resume), order), resume.__name__


def test_the_patched_seek_stops_the_flow_before_it_seeks():
    from faust.transport.consumer import Consumer as FaustConsumer

    faust_compat.install()
    assert FaustConsumer.perform_seek.jump_patched
    seen = []

    async def original(consumer):  # records the flow's state when the seek happens
        seen.append(consumer.flow_active)

    consumer = base_app(settings(), "seek").consumer
    consumer.resume_flow()
    asyncio.run(faust_compat.seek_stopping_flow(original)(consumer))
    assert seen == [False]  # stopped before the seek
    assert not consumer.flow_active and consumer.suspend_flow.is_set()  # the recovery's resume_flow() restarts it
    consumer.resume_flow()
    assert consumer.flow_active


# --------------------------------------------------------------------------- 7. eager message callback


def test_faust_races_each_records_delivery_against_the_flow_suspension():
    """The call the patch makes cheap: one `wait_first(callback(message), suspend_flow.wait())` per
    record, in the Consumer's drain loop (and that loop still lets other tasks run every 100)."""
    from faust.transport.consumer import Consumer as FaustConsumer

    src = inspect.getsource(FaustConsumer._drain_messages)
    assert re.search(r"await self\.wait_first\(\s*callback\(message\), self\.suspend_flow\.wait\(\)\s*\)", src)
    assert "yield_every = 100" in src and "await sleep(0)" in src
    faust_compat.install()
    assert FaustConsumer.wait_first.jump_patched


class Racer:
    """What eager_wait_first reads of a Faust Consumer, and mode's own `wait_first` as the original."""

    def __init__(self):
        self._stopped, self._crashed, self.suspend_flow = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.original_calls = 0

    async def original(self, *coros, timeout=None):
        from mode.services import Service

        self.original_calls += 1
        return await Service.wait_first(self, *coros, timeout=timeout)


def _eager(racer: Racer):
    async def original(self, *coros, timeout=None):
        return await self.original(*coros, timeout=timeout)

    return faust_compat.eager_wait_first(original).__get__(racer)


def test_a_delivery_that_does_not_wait_finishes_without_a_task_or_the_original_race():
    async def run():
        racer = Racer()

        async def deliver():
            return "delivered"

        other = racer.suspend_flow.wait()
        tasks_before = len(asyncio.all_tasks())
        res = await _eager(racer)(deliver(), other)
        assert len(asyncio.all_tasks()) == tasks_before
        assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED  # no "never awaited" warning
        return res, racer.original_calls

    res, calls = asyncio.run(run())
    assert res.results == ["delivered"] and not res.stopped and calls == 0


def test_a_delivery_that_waits_is_resumed_in_a_task_and_raced_as_before():
    async def run():
        racer = Racer()
        go = asyncio.Event()
        trace = []

        async def deliver():
            trace.append("started")
            await go.wait()  # a full queue, suspended flow control, ...
            trace.append("resumed")
            return 7

        asyncio.get_running_loop().call_later(0.05, go.set)
        res = await _eager(racer)(deliver(), racer.suspend_flow.wait())
        return res, trace, racer.original_calls

    res, trace, calls = asyncio.run(run())
    assert 7 in res.results and not res.stopped and trace == ["started", "resumed"] and calls == 1


def test_a_waiting_delivery_is_cancelled_when_the_flow_is_suspended_as_before():
    async def run():
        racer = Racer()
        cancelled = []

        async def deliver():
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        asyncio.get_running_loop().call_later(0.05, racer.suspend_flow.set)
        res = await _eager(racer)(deliver(), racer.suspend_flow.wait())
        await asyncio.sleep(0)  # let the cancelled task run its handler
        return res, cancelled

    res, cancelled = asyncio.run(run())
    assert res.results == [True] and cancelled == [True]  # the suspension won, the delivery was cancelled


def test_an_error_in_the_delivery_propagates_and_a_signalled_suspension_takes_the_original_race():
    async def run():
        racer = Racer()

        async def fails():
            raise ValueError("decode")

        other = racer.suspend_flow.wait()
        with pytest.raises(ValueError, match="decode"):
            await _eager(racer)(fails(), other)
        assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED
        racer.suspend_flow.set()

        async def deliver():
            return 1

        res = await _eager(racer)(deliver(), racer.suspend_flow.wait())
        return res, racer.original_calls

    res, calls = asyncio.run(run())
    assert calls == 1 and 1 in res.results


def test_producer_options_reach_the_aiokafka_producer():
    """JUMP_PRODUCER_ACKS / idempotence reach the aiokafka producer Faust builds (set before it starts)."""
    import asyncio

    app = base_app(settings(), "producer-options")

    async def build(options):
        faust_compat.set_producer_options(app, options)
        p = app.producer._new_producer()
        try:
            return p._sender._acks, p._txn_manager is not None
        finally:
            await p.client.close()

    assert asyncio.run(build({"acks": 1, "enable_idempotence": False})) == (1, False)
    assert asyncio.run(build({"acks": "all", "enable_idempotence": True})) == (-1, True)
