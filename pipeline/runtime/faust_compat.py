"""Every use of faust-streaming's and aiokafka's private internals, in one place.

The Faust apps (pipeline/runtime/faust_app.py) need seven things neither library offers publicly:

1. A fetch long-poll shorter than Faust's: Faust builds its worker consumer with a hard-coded
   `fetch_max_wait_ms=1500`, and Tansu answers a waiting fetch late, which put up to ~0.5 s on
   each hop at low load. `_create_worker_consumer` is patched to set the app's
   JUMP_FETCH_MAX_WAIT_MS on aiokafka's consumer before it starts (`_fetch_max_wait_ms`).
2. Right changelog end offsets for Table recovery: Faust takes them from ListOffsets, which Tansu
   answers wrong (too low, even 0 for a non-empty partition), so a restarted sessionizer would
   recover part of its state. `_highwaters` is patched to take the larger of ListOffsets and the
   high watermark of a real fetch (`fetch_highwaters`); on Kafka the two agree.
3. Table writes as record batches. `table[key] = value` sends one changelog record through
   Faust's per-record machinery (a FutureMessage, the ProducerBuffer, a callback) to the changelog
   partition of the *current event* (`faust.streams._current_event`), which inside a `take_events`
   batch is one event for the whole batch. The sessionizer instead writes its changelog records
   itself, in record batches to the session's own partition of `changelog_topic(table)` with the
   aiokafka producer under Faust's (`kafka_producer`), and mirrors each write in the Table's store
   (`mirror_table`): the same bytes (raw key and value) in the same topic and partition, so
   Faust's recovery reads them as its own; only the per-record cost is gone.
4. Consumer lag without ListOffsets: Faust's consumer keeps the last offset handed to the streams
   in `_read_offset` (`read_offset`), to subtract from the fetch high watermark.
5. No clicks dropped after a recovery (the restart stall of issue 14). Faust's recovery resumes
   the stream partitions, seeks them to the committed offsets, then calls
   `app.flow_control.resume()`, which *clears every stream queue*, and only then resumes the
   consumer's flow. But the flow is already running then (the changelog reading turned it on),
   so records fetched after the seek sit in the queues when they are cleared: they are gone for
   this process (Faust's read offset has passed them, so they are never fetched again), and the
   committed offset never moves again, because Faust commits only over a gap-free run of acked
   offsets from the committed one. Upstream: faust-streaming/faust#596 (open). Seen here as a
   restarted sessionizer whose training log stopped short and whose group offset froze (about one
   restart in five on the embedded broker; a slow seek makes it certain).
   `Consumer.perform_seek` is patched to stop the consumer's flow before it seeks
   (`_patch_seek_stops_flow`): nothing reaches the queues between the seek and the clear, what
   was queued before the seek is fetched again from the committed offset, and the recovery's own
   `consumer.resume_flow()`, right after the clear, starts the flow again.
6. Readiness: whether the Tables have recovered (`table_recovered`: Faust's recovery's
   `completed` event and `app.in_recovery`), for the sessionizer's /readyz.
7. No four tasks per consumed record. For every record, Faust's `Consumer._drain_messages` runs
   `await self.wait_first(callback(message), self.suspend_flow.wait())`: the delivery to the
   stream queues raced against a rebalance's suspension. mode's `wait_first` makes a task of
   each, plus two for the service's stopped and crashed events, waits, and cancels the losers:
   about four tasks and several event-loop turns per record, most of Faust's per-event cost (the
   sessions benchmark's Faust pass-through: ~2.4k records/s on 4 partitions). The delivery almost
   never waits (it blocks only while flow control is suspended, the producer buffer is over its
   limit, or a stream queue is full), so the Consumer's `wait_first` is patched to start the
   callback eagerly, as Python 3.12's eager tasks do (`eager_wait_first`): when it finishes without
   suspending, that is the result and no task is made; when it suspends, the started coroutine
   is resumed in a task and raced exactly as before. Stopped, crashed, or a suspension already
   signalled: Faust's own `wait_first`.

Per-app settings (the fetch wait, the Kafka client options of the recovery fetch) are kept here,
keyed by app (`configure`), not as attributes set on `faust.App`.

`check_versions` refuses to run on other versions of faust-streaming and aiokafka than the ones
these patches were written and tested against (TESTED, the pins of requirements.txt): an upgrade
must come with a review of this module and of tests/unit/test_faust_compat.py, which fails when a
patched internal changes shape.
"""

from __future__ import annotations

import inspect
import logging
import types
import weakref
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from mode.services import WaitResults

log = logging.getLogger("jump.pipeline")

#: the versions the patches below were tested with (requirements.txt pins the same)
TESTED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


def installed_versions() -> dict[str, str]:
    """Distribution name -> installed version, for the distributions of TESTED."""
    out = {}
    for name in TESTED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "(not installed)"
    return out


def check_versions() -> None:
    """RuntimeError (one line) unless the installed faust-streaming and aiokafka are the tested ones."""
    installed = installed_versions()
    wrong = [
        f"{name} {installed[name]} is installed, tested with {tested}"
        for name, tested in TESTED.items()
        if installed[name] != tested
    ]
    if wrong:
        pins = " ".join(f"{name}=={tested}" for name, tested in TESTED.items())
        raise RuntimeError(
            f"{'; '.join(wrong)}: install the tested versions ({pins}, as requirements.txt "
            "pins them), or review pipeline/runtime/faust_compat.py against the installed ones "
            "and update its TESTED versions"
        )


# --------------------------------------------------------------------------- per-app settings


@dataclass(frozen=True)
class AppOptions:
    fetch_max_wait_ms: int | None  # the worker consumer's fetch long-poll (None: Faust's 1500 ms)
    kafka_kwargs: dict | None  # aiokafka client options of the recovery fetch (None: ListOffsets only)


_options: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # faust.App -> AppOptions


def configure(app, *, fetch_max_wait_ms: int | None, kafka_kwargs: dict | None) -> None:
    """Check the versions, install the patches (once per process) and give `app` its settings.
    Call it on every app before it starts."""
    check_versions()
    install()
    _options[app] = AppOptions(fetch_max_wait_ms, kafka_kwargs)


def options(app) -> AppOptions | None:
    """The settings `configure` gave `app`, or None."""
    return _options.get(app)


def install() -> None:
    """Install the patches of Faust's aiokafka driver and consumer (idempotent)."""
    _patch_fetch_wait()
    _patch_recovery_highwaters()
    _patch_eager_message_callback()
    _patch_seek_stops_flow()


# --------------------------------------------------------------------------- 1. fetch wait


def set_fetch_max_wait(consumer, ms: int) -> None:
    """Set an aiokafka consumer's fetch long-poll after construction, before `start()`.

    Private: AIOKafkaConsumer keeps its `fetch_max_wait_ms` argument in `_fetch_max_wait_ms` and
    hands it to its Fetcher in `start()`; there is no public setter, and Faust constructs the
    consumer itself with a hard-coded 1500 ms.
    """
    consumer._fetch_max_wait_ms = ms


def _replace(cls, name: str, wrap) -> None:
    """Set `cls.name` to `wrap(original)` once (marked `jump_patched`, the original kept as
    `jump_original`); a second call finds the mark and does nothing."""
    original = getattr(cls, name)
    if getattr(original, "jump_patched", False):
        return
    patched = wrap(original)
    patched.jump_patched = True
    patched.jump_original = original
    setattr(cls, name, patched)


def _patch_fetch_wait() -> None:
    """Faust hard-codes the worker consumer's fetch_max_wait_ms (1500); use the app's
    JUMP_FETCH_MAX_WAIT_MS instead (Tansu answers a waiting fetch late: ~0.5 s a hop at low load)."""
    from faust.transport.drivers import aiokafka as driver

    def wrap(create):  # private: Faust's consumer factory
        def _create_worker_consumer(self, transport):
            consumer = create(self, transport)
            opts = _options.get(self.app)
            if opts is not None and opts.fetch_max_wait_ms:
                set_fetch_max_wait(consumer, opts.fetch_max_wait_ms)  # the consumer is not started yet
            return consumer

        return _create_worker_consumer

    _replace(driver.AIOKafkaConsumerThread, "_create_worker_consumer", wrap)


# --------------------------------------------------------------------------- 2. recovery end offsets


def _patch_recovery_highwaters() -> None:
    """Table recovery reads each changelog partition up to its end offset, which Faust takes from
    ListOffsets (`AIOKafkaConsumerThread._highwaters`, behind `Consumer.highwaters`). Tansu answers
    ListOffsets wrong (too low, even 0 for a non-empty partition), so a restarted sessionizer would
    recover part of its state. Take the larger of ListOffsets and the high watermark of a real fetch
    (which Tansu reports right); on Kafka the two agree."""
    from faust.transport.drivers import aiokafka as driver

    def wrap(original):  # private: Faust's ListOffsets call
        async def _highwaters(self, partitions):
            reported = dict(await original(self, partitions))
            opts = _options.get(self.app)
            kwargs = opts.kafka_kwargs if opts is not None else None
            if not kwargs or not partitions or self.consumer.in_transaction:
                return reported
            return await fetch_highwaters(kwargs, list(partitions), reported)

        return _highwaters

    _replace(driver.AIOKafkaConsumerThread, "_highwaters", wrap)


async def fetch_highwaters(kafka_kwargs: dict, partitions: list, reported: dict, tries: int = 50) -> dict:
    """max(reported, the fetch high watermark) per partition, with a throwaway group-less consumer."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tps = {tp: TopicPartition(tp.topic, tp.partition) for tp in partitions}  # Faust's TP -> aiokafka's
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


# --------------------------------------------------------------------------- 3. Table writes


def kafka_producer(app):
    """The aiokafka producer under Faust's (private: `Producer._ensure_producer()`), started with the
    app; its `create_batch` / `send_batch` write record batches (runtime.batches)."""
    return app.producer._ensure_producer()


def set_producer_options(app, options: dict) -> None:
    """aiokafka options of the app's producer on top of Faust's settings (`acks`,
    `enable_idempotence`): Faust passes `enable_idempotence` only inside transactions. Its producer
    merges `_settings_extra()` last when it builds the aiokafka producer (private); call this before
    the producer starts."""
    producer = app.producer
    original = type(producer)._settings_extra
    producer._settings_extra = lambda: {**original(producer), **options}


def changelog_topic(table) -> str:
    """The Table's changelog topic name (`<app id>-<table name>-changelog`)."""
    return table.changelog_topic.get_topic_name()


def mirror_table(table, key: bytes, value: bytes | None) -> None:
    """Set (None: delete) `key` in the Table's in-memory store only, without a changelog record: the
    caller has written that record itself. Together they are what `table[key] = value` does."""
    store = table.data
    if value is None:
        if key in store:
            del store[key]
    else:
        store[key] = value


# --------------------------------------------------------------------------- 4. consumer lag


def read_offset(consumer, tp) -> int | None:
    """The last offset Faust's consumer handed to the streams on `tp` (None: none yet).

    Private: Faust keeps it in `Consumer._read_offset`; the lag is the fetch high watermark minus
    this (+ 1), since ListOffsets-based end offsets are wrong on Tansu.
    """
    return consumer._read_offset.get(tp)


# --------------------------------------------------------------------------- 5. seek, then clear, then flow


def seek_stopping_flow(original):
    """`original` (Faust's `Consumer.perform_seek`) preceded by `consumer.stop_flow()`."""

    async def perform_seek(self) -> None:
        self.stop_flow()
        await original(self)

    return perform_seek


def _patch_seek_stops_flow() -> None:
    """Stop the consumer's flow before `perform_seek` (see 5. in the module docstring).

    Faust calls `perform_seek` from its recovery, right before `app.flow_control.resume()` (which
    clears the stream queues) and `consumer.resume_flow()`, and from `getmany` when records arrive
    while the flow is stopped. In both the flow is stopped after the seek anyway; stopping it
    before means no record fetched after the seek is delivered, and then cleared, before the
    recovery resumes the flow."""
    from faust.transport.consumer import Consumer

    _replace(Consumer, "perform_seek", seek_stopping_flow)


# --------------------------------------------------------------------------- 7. eager message callback


@types.coroutine
def _resume(coro, yielded):
    """Drive `coro`, started by hand and suspended on `yielded`, to its end (what a task does;
    sends, throws, including cancellation, and its return value pass through)."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as e:  # a cancellation, or an exception thrown in by the task
            try:
                yielded = coro.throw(e)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _resumed(coro, yielded):
    return await _resume(coro, yielded)


def eager_wait_first(original):
    """`original` (mode's `Service.wait_first`) with the first coroutine started eagerly when
    `self` (a Faust Consumer) is running and no flow suspension is signalled (7. above)."""

    async def wait_first(self, *coros, timeout=None):
        if (
            len(coros) == 2
            and timeout is None
            and inspect.iscoroutine(coros[0])
            and not (self._stopped.is_set() or self._crashed.is_set() or self.suspend_flow.is_set())
        ):
            first, other = coros
            try:
                yielded = first.send(None)
            except StopIteration as stop:  # finished without waiting: no task, no race
                if inspect.iscoroutine(other):
                    other.close()
                return WaitResults([first], [stop.value], False)
            except BaseException:
                if inspect.iscoroutine(other):
                    other.close()
                raise
            coros = (_resumed(first, yielded), other)
        return await original(self, *coros, timeout=timeout)

    return wait_first


def _patch_eager_message_callback() -> None:
    """Give Faust's Consumer the eager `wait_first` (see 7. in the module docstring)."""
    from faust.transport.consumer import Consumer

    _replace(Consumer, "wait_first", eager_wait_first)


# --------------------------------------------------------------------------- 6. readiness


def table_recovered(app) -> bool:
    """True once the worker's Tables have recovered from their changelogs and no recovery runs now.

    Private: Faust sets `app.tables.recovery.completed` (an Event, never cleared) after the first
    recovery, and `app.in_recovery` during every later one (a rebalance). The sessionizer's /readyz
    follows this, so a rolling update waits until the new pod's Table is back."""
    return app.tables.recovery.completed.is_set() and not app.in_recovery
