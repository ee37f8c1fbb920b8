"""`jump bench stream --workload sessions`: the project's sessionizer against peer stream processors.

One run, one broker (an embedded Tansu broker unless `bootstrap` / $KAFKA_BOOTSTRAP_SERVERS is
given). The workload (pipeline/devtools/sessions_workload.py: N clicks of K users, many sessions open
at once, no within-user gap near the 1 h session gap) is produced once to a source topic of P
partitions: key = the user (b"u00012"), value = codec.encode_click(..., key_field="user") (msgpack),
Kafka timestamp = the click's event time in ms. Then, one after another, each contender reads the
whole source topic from the beginning (its own consumer group, or none) and writes its own topics:

* `sessionizer`: this project's sessionizer as deployed -- a `jump sessionizer` subprocess (Faust,
  changelog-backed table, one inference request per click, a training-log record per closed session),
  session gap 3600 s, grace 60 s (its default), idle close off (1e9 s: no wall-clock closes) and no
  tick records (they only drive the idle close, which is off here);
  with `--sessionizer-workers 1,2` once per worker count: `sessionizer_x2` is two `jump sessionizer`
  processes with the same Settings (one app id, so one consumer group splitting the P partitions; each
  its own metrics port and Faust data directory). They read a copy of the source -- a fresh topic of P
  partitions, written (pre-built record batches, well under a second) only once both workers are ready
  and the group is stable with each holding partitions, so that no worker sessionizes alone before the
  others join and the measured interval holds no rebalance. The closing rule (partition_stream_time) is
  per partition, so splitting the partitions must not change one session: the check is the same;
* `faust_batch`: the bare Faust batch pass-through (variant (b2) of the pipeline workload,
  pipeline/devtools/faust_passthrough.py mode `batch`): Faust's floor for reading and re-writing every
  click, no sessionizing;
* `aiokafka`: the bare aiokafka consume -> produce pass-through in this process (variant (a)): the
  ceiling of a Python client on this broker;
* `quix`: Quix Streams session windows (pipeline/devtools/peers/quix_sessions.py), in a subprocess;
  `quix_count` the same aggregating only Count() (the cheapest Quix session window);
* `bytewax`: a Bytewax session-window flow (pipeline/devtools/peers/bytewax_sessions.py), one worker,
  in a subprocess.

Quix Streams and Bytewax come from the optional `bench` extra, installed in its own virtualenv
(`make bench-peers-venv`: .venv-bench, requirements-bench.txt) because installing them next to the
project would change its Faust (faust picks up orjson when present). The peer scripts run with
`peer_python`: --peer-python, else $JUMP_BENCH_PYTHON, else .venv-bench/bin/python when present, else
this interpreter. A peer whose framework that interpreter cannot import is skipped, with the reason.

Figures (DEFINITIONS below is printed and written with them):

* events/s = N / measured interval; the interval of each contender is in DEFINITIONS (each spans the
  processing of the N clicks, give or take one batch at its ends; start-up and consumer-group join
  excluded);
* CPU µs/click = CPU seconds of the contender's process (its whole tree for a subprocess; the
  thread running the pass-through for the in-process aiokafka) over that same interval / N * 1e6,
  from /proc samples taken every 50 ms by this process and interpolated to the interval's ends; the
  broker's CPU over the same interval is reported beside it;
* closed sessions: the sessions the contender has emitted once it has read all N clicks, against
  the count its closing rule gives offline (sessions_workload.expected_closed) and, session by
  session, against the exact sessions (key, click times) that rule has closed
  (sessions_workload.compare_sessions): `ok` when both agree exactly;
* ratios: events/s of each contender divided by that of every other one;
* cores busy: CPU seconds over the interval / its length, of the contender, the broker, this harness,
  the whole machine (/proc/stat) and the rest ("other": work that is none of these -- the machine is
  shared); with several sessionizer workers, each worker's CPU per click and the scale-out summary
  (speed-up over one worker) in `scaleout`.

No assertion on speed: figures only, indicative on a shared 2-core machine.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from .stream_bench import (
    _aiokafka_passthrough,
    _cpu_s,
    _faust_passthrough,
    _machine_busy_s,
    _produce,
    bench_settings,
    reader,
)

ROOT = Path(__file__).resolve().parents[2]
CONTENDERS = ("sessionizer", "faust_batch", "aiokafka", "quix", "quix_count", "bytewax")
PEER_MODULES = {"quix": "quixstreams", "quix_count": "quixstreams", "bytewax": "bytewax"}
PINNED = {"quixstreams": "3.28.1", "bytewax": "0.21.1"}  # the `bench` extra of pyproject.toml

DEFINITIONS = {
    "sessionizer": "sessionizer: N / (Kafka CreateTime of the last inference-request record - CreateTime of the "
    "first), over all partitions; every accepted click yields one request, written after its batch "
    "(JUMP_SESSIONIZER_BATCH clicks at most) is processed. sessionizer_x<W>: the same over the requests of its W "
    "workers (one consumer group), which read their own copy of the source, written once every worker was ready "
    "and the group stable (the workers' start-up and group join are outside the interval, as for one worker)",
    "faust_batch": "faust_batch: N / (CreateTime of the last output record - CreateTime of the first) "
    "(the Faust pass-through of the pipeline workload's variant (b2): pipeline/devtools/faust_passthrough.py, "
    "mode batch)",
    "aiokafka": "aiokafka: N / (wall time from the first getmany() that returned records to the moment the last "
    "re-produced record's send future resolved)",
    "peers": "quix, bytewax: N / (wall time at which the N-th source message reached the session window "
    "operator - wall time at which the first source message was decoded), recorded by the peer process",
    "cpu": "cpu µs/click: CPU (user + system) of the contender (every worker process) over its measured interval "
    "/ N; broker µs/click: the broker's CPU over the same interval / N; harness µs/click: this process's -- CPU "
    "sampler, metric scrapes, the Faust pass-through's output reader, the in-process aiokafka pass-through "
    "itself, the source copy's writes for several sessionizer workers. per worker (JSON per_worker): its CPU / N "
    "(the workers' figures add up to the contender's) and / the clicks it sessionized itself",
    "cores": "cores busy: CPU seconds over the measured interval / its length -- contender, broker, harness, "
    "machine (/proc/stat: user, nice, system, irq, softirq, steal over every core: all work on the machine) and "
    "other = machine - contender - broker - harness (work outside this benchmark); on C CPUs the machine can be "
    "at most C busy, so W sessionizer workers reach W x one worker's events/s only with W cores free for them",
    "sessions": "closed: sessions emitted (sessionizer: training-log records) once all N clicks were read; "
    "expected: the offline count under the contender's closing rule; sessions ok: the emitted sessions equal "
    "the expected ones exactly (key and every click time)",
    "ratios": "ratios[a][b] = events/s of a / events/s of b",
}

NOTES = {
    "sessionizer": "Faust table + changelog topic (durable state); per click an inference request carrying up to "
    "50 clicks of context; per closed session a training-log record with its dwell tuples; input validation "
    "and dead letters",
    "faust_batch": "no state, no sessionizing: every click re-sent",
    "aiokafka": "no state, no sessionizing, no consumer group: every click re-sent",
    "quix": "RocksDB + changelog topic (durable state); one JSON record per closed session",
    "quix_count": "as quix, aggregating only Count() (the cheapest Quix session window: no click times "
    "kept, its sessions checked by their number of clicks)",
    "bytewax": "windows in memory (no recovery store configured), no consumer group (Bytewax assigns partitions "
    "itself); one JSON record per closed session",
}

RULE_TEXT = {
    "partition_stream_time": "closes when its partition's stream time passes last click + gap + grace",
    "key_time": "closes when its user's own latest event time passes last click + 2 x gap + grace",
    "all": "closes when its user's next session opens; the end of the bounded input closes the rest",
}


def _log(msg: str) -> None:
    print(f"[bench sessions {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- CPU sampling


def _thread_cpu_s(pid: int, tid: int) -> float | None:
    """User+system CPU seconds of one thread (Linux /proc), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    except OSError:
        return None
    parts = stat[stat.rindex(")") + 2 :].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """Samples named CPU counters (callables returning CPU seconds, or None once gone) every `every_s` in
    a background thread, so that the CPU spent over any interval measured afterwards -- a contender's
    first to last output, say -- can be read back (`between`) by linear interpolation of the samples."""

    def __init__(self, every_s: float = 0.05):
        self.every_s = every_s
        self._fns: dict = {}
        self._series: dict[str, list[tuple[float, float]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def watch(self, name: str, fn) -> None:
        with self._lock:
            self._fns[name] = fn
            self._series.setdefault(name, [])
        self._sample()

    def unwatch(self, name: str) -> None:
        self._sample()
        with self._lock:
            self._fns.pop(name, None)

    def _sample(self) -> None:
        with self._lock:
            fns = list(self._fns.items())
        for name, fn in fns:
            t, v = time.time(), fn()
            if v is not None:
                with self._lock:
                    self._series[name].append((t, v))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def between(self, name: str, t0: float, t1: float) -> float | None:
        with self._lock:
            series = list(self._series.get(name, ()))
        if len(series) < 2:
            return None
        times = [t for t, _ in series]

        def at(t: float) -> float:
            i = bisect.bisect_right(times, t)
            if i == 0:
                return series[0][1]
            if i == len(series):
                return series[-1][1]
            (ta, ca), (tb, cb) = series[i - 1], series[i]
            return ca + (cb - ca) * (t - ta) / (tb - ta) if tb > ta else cb

        return max(0.0, at(t1) - at(t0))


# --------------------------------------------------------------------------- Kafka reads


def _read_all(settings, topic: str, timeout_s: float = 120.0) -> list:
    """Every record of `topic` (kafka-python ConsumerRecords, all partitions), read up to the high
    watermark of a real fetch -- not ListOffsets, which Tansu reports too low."""

    deadline = time.monotonic() + timeout_s
    consumer, tps = reader(settings, topic, deadline, fetch_max_wait_ms=50)
    try:
        records: list = []
        while True:
            for recs in consumer.poll(timeout_ms=200, max_records=100_000).values():
                records.extend(recs)
            hw = [consumer.highwater(tp) for tp in tps]
            if all(h is not None and consumer.position(tp) >= h for tp, h in zip(tps, hw)):
                return records
            if time.monotonic() > deadline:
                raise RuntimeError(f"reading {topic}: {len(records):,} records, high watermarks {hw} not reached")
    finally:
        consumer.close()


def _source_count(settings, topic: str) -> int:
    """Records in `topic` by the fetch high watermarks (a check that no contender wrote into the source)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **settings.kafka_python_kwargs(), group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 30
        while any(consumer.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200, max_records=1)
        return sum(consumer.highwater(tp) or 0 for tp in tps)
    finally:
        consumer.close()


# --------------------------------------------------------------------------- contenders


@dataclasses.dataclass
class Run:
    """What every contender shares: settings, the source, the workload and the sampler."""

    base: object  # pipeline.config.Settings
    src: str
    n: int
    clicks: list
    partitions: int
    gap_s: float
    grace_s: float
    work: Path
    logs: Path
    token: str
    broker_pid: int | None
    sampler: CpuSampler
    timeout_s: float
    peer_python: str

    def expected(self, rule: str) -> list:
        from .sessions_workload import closed_sessions, kafka_partition

        return closed_sessions(
            self.clicks,
            rule,
            partition_of=lambda k: kafka_partition(k.encode(), self.partitions),
            gap_s=self.gap_s,
            grace_s=self.grace_s,
        )

    def measured(self, name: str, t0: float, t1: float, **extra) -> dict:
        """events/s and CPU over [t0, t1] for contender `name` (its sampler series) and the broker."""
        secs = max(t1 - t0, 1e-6)
        cpu = self.sampler.between(name, t0, t1)
        broker = self.sampler.between("broker", t0, t1)
        harness = self.sampler.between("harness", t0, t1)
        machine = self.sampler.between("machine", t0, t1)
        workers = workers_of(name)
        what = NOTES.get(name) or NOTES["sessionizer"]
        if workers is not None:
            what += (
                "; 1 worker process"
                if workers == 1
                else f"; {workers} worker processes in one consumer group, the {self.partitions} partitions split"
            )

        def cores(v):
            return None if v is None else round(v / secs, 2)

        busy = {"contender": cores(cpu), "broker": cores(broker), "harness": cores(harness), "machine": cores(machine)}
        if None not in (cpu, broker, harness, machine):
            busy["other"] = round(max(0.0, machine - cpu - broker - harness) / secs, 2)
        return {
            "events_per_s": round(self.n / secs, 1),
            "seconds": round(secs, 3),
            "interval": [round(t0, 3), round(t1, 3)],
            "cpu_s": None if cpu is None else round(cpu, 3),
            "cpu_us_per_click": None if cpu is None else round(cpu / self.n * 1e6, 1),
            "broker_cpu_s": None if broker is None else round(broker, 3),
            "broker_cpu_us_per_click": None if broker is None else round(broker / self.n * 1e6, 1),
            "harness_cpu_s": None if harness is None else round(harness, 3),
            "harness_cpu_us_per_click": None if harness is None else round(harness / self.n * 1e6, 1),
            "cores_busy": busy,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "what_it_does": what,
            **extra,
        }


def _sessions_check(run: Run, rule: str, got: list, counts_only: bool = False) -> dict:
    """`got`: (key, click times); with `counts_only` (a peer that emits only each session's number
    of clicks, e.g. Quix with JUMP_BENCH_QUIX_AGG=count) (key, [number of clicks])."""
    from .sessions_workload import compare_sessions

    expected = run.expected(rule)
    if counts_only:
        expected = [(k, [float(len(ts))]) for k, ts in expected]
    diff = compare_sessions(got, expected)
    return {
        "closing_rule": rule,
        "closed_sessions": len(got),
        "expected_closed": len(expected),
        "sessions": diff,
        "sessions_ok": len(got) == len(expected) and diff["missing"] == 0 and diff["extra"] == 0,
    }


def sessionizer_name(workers: int) -> str:
    """The contender name of the sessionizer run with `workers` worker processes."""
    return "sessionizer" if workers == 1 else f"sessionizer_x{workers}"


def workers_of(name: str) -> int | None:
    """Worker processes of a sessionizer contender (`sessionizer`: 1, `sessionizer_x<N>`: N); None for others."""
    if name == "sessionizer":
        return 1
    head, sep, tail = name.partition("_x")
    if head == "sessionizer" and sep and tail.isdigit() and int(tail) >= 1:
        return int(tail)
    return None


def parse_workers(spec) -> tuple[int, ...]:
    """--sessionizer-workers: "1,2" (or a sequence of ints) -> (1, 2), duplicates dropped, order kept."""
    items = [x.strip() for x in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[int] = []
    for x in items:
        if x == "":
            continue
        try:
            w = int(x)
        except (TypeError, ValueError):
            raise ValueError(f"--sessionizer-workers: {x!r} is not a whole number") from None
        if w < 1:
            raise ValueError(f"--sessionizer-workers: {w} (each count must be >= 1)")
        if w not in out:
            out.append(w)
    if not out:
        raise ValueError("--sessionizer-workers: give at least one worker count")
    return tuple(out)


def expand_contenders(contenders, workers) -> tuple[str, ...]:
    """`sessionizer` in `contenders` becomes one contender per worker count of `workers`, in its place
    (1 -> sessionizer, 2 -> sessionizer_x2, ...); the others are kept; duplicates dropped."""
    out: list[str] = []
    for c in contenders:
        for name in [sessionizer_name(w) for w in workers] if c == "sessionizer" else [c]:
            if name not in out:
                out.append(name)
    return tuple(out)


def _source_messages(clicks) -> list[tuple[bytes, bytes, int]]:
    """The source topic's records: (key = the user, msgpack click, Kafka timestamp = event time in ms)."""
    from .. import codec

    return [
        (c.key.encode(), codec.encode_click(c.key, c.item, c.ts, c.event_id, key_field="user"), round(c.ts * 1000))
        for c in clicks
    ]


def _ready(port: int) -> bool:
    """The worker's /readyz answers 200."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _partition_set(text: str) -> list[int]:
    """Faust's partition-set notation ("{0-1,3}") -> [0, 1, 3]."""
    out: list[int] = []
    for part in text.strip().strip("{}").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(set(out))


def _log_assignments(log: Path, topic: str) -> list[list[int]]:
    """The partitions of `topic` in every assignment a Faust worker logged ("Setting newly assigned
    partitions" tables, aiokafka's group coordinator at INFO), oldest first; [] for an assignment
    without `topic`."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for block in text.split("Setting newly assigned partitions")[1:]:
        table = block.split(" for group ", 1)[0]
        got: list[int] = []
        for line in table.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 2 and cells[0] == topic:
                got = _partition_set(cells[1])
        out.append(got)
    return out


def _describe_group(settings, group_id: str, topic: str) -> dict:
    """The broker's view of a consumer group (DescribeGroups, with aiokafka: kafka-python's admin
    client rejects Tansu's authorized-operations field): its state and each member's partitions of
    `topic`; {"error": ...} when the broker or client cannot tell."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    async def describe():
        admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(), request_timeout_ms=5000)
        await admin.start()
        try:
            return await admin.describe_consumer_groups([group_id])
        finally:
            await admin.close()

    try:
        for response in asyncio.run(describe()):
            for g in response.groups:
                error_code, gid, state, _protocol_type, _protocol, members = g[:6]
                if gid != group_id:
                    continue
                if error_code:
                    return {"error": f"error code {error_code}"}
                parts = []
                for m in members:
                    raw = m[4]
                    got: list[int] = []
                    if raw:
                        for t, ps in ConsumerProtocolMemberAssignment.decode(raw).assignment:
                            if t == topic:
                                got = sorted(ps)
                    parts.append(got)
                # Tansu (0.6) answers the state and the members, but no assignment (an empty one)
                return {
                    "state": state,
                    "members": len(members),
                    "member_partitions": sorted(parts) if any(parts) else None,
                }
        return {"error": "group not in the response"}
    except Exception as e:  # informative only: readiness and the workers' own logs gate the measurement
        return {"error": f"{type(e).__name__}: {e}"[:300]}


async def _gated_fill(settings, topic: str, msgs: list, partitions: int, until) -> dict:
    """Write `msgs` to the empty `topic` (each to its key's default-partitioner partition, in order) as
    aiokafka record batches built in advance, once `until()` (blocking, run in a thread) has returned:
    the records reach the broker in well under a second, far faster than any contender reads them."""
    from aiokafka import AIOKafkaProducer

    from .sessions_workload import kafka_partition

    producer = AIOKafkaProducer(
        **settings.aiokafka_kwargs(), acks=1, enable_idempotence=False, linger_ms=0, max_batch_size=1 << 18
    )
    await producer.start()
    try:
        batches, open_ = [], {}
        for key, value, ts_ms in msgs:
            p = kafka_partition(key, partitions)
            b = open_.get(p)
            if b is None:
                b = open_[p] = producer.create_batch()
            if b.append(timestamp=ts_ms, key=key, value=value) is None:  # full: the next one
                batches.append((p, b))
                b = open_[p] = producer.create_batch()
                b.append(timestamp=ts_ms, key=key, value=value)
        batches.extend(open_.items())  # each partition's last batch after its full ones: order kept
        gate = await asyncio.to_thread(until)
        t0 = time.time()
        futures = [await producer.send_batch(b, topic, partition=p) for p, b in batches]
        await asyncio.gather(*futures)
        t1 = time.time()
    finally:
        await producer.stop()
    return {"t_first": t0, "t_done": t1, "seconds": round(t1 - t0, 3), "record_batches": len(batches), **gate}


def _sessionizer(run: Run, name: str = "sessionizer") -> dict:
    """This project's sessionizer: `workers_of(name)` `jump sessionizer` processes with the same Settings
    (one app id, so one consumer group; each its own metrics port and Faust data directory) until they
    have consumed the N clicks between them; figures from the request records' CreateTime.

    One worker reads the shared source topic. Several read a copy of it: a fresh topic of the same
    partitions, filled only once every worker is ready and the group is stable with every worker holding
    partitions -- a worker that joined first would otherwise sessionize the already full source alone
    until the others joined, and the measured interval would hold that rebalance."""
    from .. import codec
    from ..runtime.kafka import ensure_topics, topic_specs
    from . import procs
    from .broker import free_port

    workers = workers_of(name)
    if workers is None:
        raise ValueError(f"not a sessionizer contender: {name}")
    tag = f"{run.token}-{name}"
    topics = {
        f.name: f"{f.default}-sessbench-{tag}" for f in dataclasses.fields(run.base) if f.name.startswith("topic_")
    }
    topics["topic_clicks"] = run.src if workers == 1 else f"sessbench-src-{tag}"
    ports: list[int] = []
    while len(ports) < workers:
        if (port := free_port()) not in ports:
            ports.append(port)
    s = dataclasses.replace(
        run.base,
        app_id=f"jump-sessbench-{tag}",
        session_gap_s=run.gap_s,
        grace_s=run.grace_s,
        idle_close_s=1e9,  # no wall-clock closes: only event time closes sessions, as in the peers
        tick_interval_s=1e6,  # no tick records (they only drive the idle close, off here)
        data_dir=str(run.work / "data" / tag / "{conf.id}"),
        metrics_port=ports[0],
        metrics_addr="127.0.0.1",
        log_level="info",
        **topics,
    )
    # the same Settings for every worker but the metrics port and the Faust data directory
    each = [
        s
        if workers == 1
        else dataclasses.replace(s, metrics_port=port, data_dir=str(run.work / "data" / tag / f"w{i}" / "{conf.id}"))
        for i, port in enumerate(ports)
    ]
    for w in each:
        Path(w.data_dir).parent.mkdir(parents=True, exist_ok=True)
    ensure_topics(s, topic_specs(s))
    logs = [run.logs / ("sessionizer.log" if workers == 1 else f"{name}.w{i}.log") for i in range(workers)]
    series = [name] if workers == 1 else [f"{name}.w{i}" for i in range(workers)]
    group_id = f"{s.app_id}-sessionizer"  # Faust's consumer group: the app id base_app gives the role
    fill: dict = {}
    group_after: dict = {}
    started: list = []

    def alive() -> None:
        for i, p in enumerate(started):
            if p.poll() is not None:
                raise RuntimeError(f"{name} worker {i} exited with {p.returncode}; log {logs[i]}:\n{_tail(logs[i])}")

    try:
        for w, log in zip(each, logs):
            log.unlink(missing_ok=True)
            started.append(procs.start_worker("sessionizer", w, log))
        if workers > 1:
            pids = [p.pid for p in started]

            def total() -> float | None:
                got = [_cpu_s(pid) for pid in pids]
                return None if None in got else sum(got)

            run.sampler.watch(name, total)
        for i, p in enumerate(started):
            run.sampler.watch(series[i], lambda pid=p.pid: _cpu_s(pid))
        for p, port, log in zip(started, ports, logs):
            procs.wait_metrics(port, p, 120, log)
        if workers > 1:
            t_wait = time.time()
            stable_since = [None]

            def group_stable() -> dict | None:
                """Every worker ready, and its latest logged assignment of the source non-empty, the
                assignments disjoint and covering every partition; held for 1 s."""
                alive()
                latest = [(a[-1] if a else []) for a in (_log_assignments(log, s.topic_clicks) for log in logs)]
                flat = sorted(p for a in latest for p in a)
                ok = all(_ready(port) for port in ports) and all(latest) and flat == list(range(run.partitions))
                if not ok:
                    stable_since[0] = None
                    return None
                if stable_since[0] is None:
                    stable_since[0] = time.time()
                    return None
                if time.time() - stable_since[0] < 1.0:
                    return None
                return {
                    "group_wait_s": round(time.time() - t_wait, 1),
                    "assigned_before": latest,
                    "assignments_before": [len(_log_assignments(log, s.topic_clicks)) for log in logs],
                    "group_before": _describe_group(s, group_id, s.topic_clicks),
                }

            def until() -> dict:
                _log(f"{name}: {workers} workers started; waiting for the group to settle")
                return procs.wait_for(group_stable, 180, 0.5, f"{workers} sessionizer workers ready, partitions split")

            fill = asyncio.run(_gated_fill(s, s.topic_clicks, _source_messages(run.clicks), run.partitions, until))
            _log(
                f"{name}: group stable after {fill['group_wait_s']} s (partitions {fill['assigned_before']}); "
                f"{run.n:,} clicks written to {s.topic_clicks} in {fill['seconds']:.2f} s"
            )
        last = [time.monotonic()]

        def done() -> bool:
            alive()
            got = sum(procs.metric_sum(procs.scrape(port), "jump_clicks_consumed_total") for port in ports)
            if time.monotonic() - last[0] > 5:
                _log(f"{name}: {int(got):,}/{run.n:,} clicks consumed")
                last[0] = time.monotonic()
            return got >= run.n

        # the end is only detected here; the figures come from the request records' timestamps
        procs.wait_for(done, run.timeout_s, 0.5, f"{run.n} clicks consumed by {name}")
        metrics = [procs.scrape(port) for port in ports]
        if workers > 1:
            group_after = _describe_group(s, group_id, s.topic_clicks)
    finally:
        for n_ in series + ([name] if workers > 1 else []):
            run.sampler.unwatch(n_)
        for p in started:
            procs.stop(p)
    requests = _read_all(s, s.topic_requests)
    training = [codec.decode("training_log", r.value) for r in _read_all(s, s.topic_training_log)]
    dead = _read_all(s, s.topic_dead_letters)
    if not requests:
        raise RuntimeError(f"{name} wrote no request; log {logs[0]}:\n{_tail(logs[0])}")
    ts = [r.timestamp / 1000.0 for r in requests]
    t0, t1 = min(ts), max(ts)
    closed_by: dict[str, int] = {}
    for m in metrics:
        for k, v in m.items():
            if k.startswith("jump_sessions_closed_total{"):
                reason = k.split('reason="', 1)[1].split('"', 1)[0]
                closed_by[reason] = closed_by.get(reason, 0) + int(v)
    extra: dict = {}
    if workers > 1:
        secs = max(t1 - t0, 1e-6)
        per = []
        for i in range(workers):
            cpu = run.sampler.between(series[i], t0, t1)
            accepted = int(procs.metric_sum(metrics[i], "jump_clicks_accepted_total"))
            history = _log_assignments(logs[i], s.topic_clicks)
            per.append(
                {
                    "worker": i,
                    "metrics_port": ports[i],
                    "data_dir": each[i].data_dir,
                    "partitions": history[-1] if history else None,
                    "assignments_logged": len(history),
                    "clicks_consumed": int(procs.metric_sum(metrics[i], "jump_clicks_consumed_total")),
                    "clicks_accepted": accepted,
                    "training_log_records": int(procs.metric_sum(metrics[i], "jump_sessions_closed_total")),
                    "cpu_s": None if cpu is None else round(cpu, 3),
                    # its CPU over all N clicks (the workers' figures add up to the contender's) ...
                    "cpu_us_per_click": None if cpu is None else round(cpu / run.n * 1e6, 1),
                    # ... and over the clicks it sessionized itself (comparable with one worker's)
                    "cpu_us_per_own_click": None if cpu is None or not accepted else round(cpu / accepted * 1e6, 1),
                    "cores_busy": None if cpu is None else round(cpu / secs, 2),
                    "log": str(logs[i]),
                }
            )
        rebalanced = [
            w["assignments_logged"] - fill["assignments_before"][i] for i, w in enumerate(per)
        ]  # assignments logged after the fill started: rebalances inside the measured interval
        extra = {
            "per_worker": per,
            "source_copy": {
                "topic": s.topic_clicks,
                "group_wait_s": fill["group_wait_s"],
                "fill_seconds": fill["seconds"],
                "fill_record_batches": fill["record_batches"],
                "fill_done_after_first_request_s": round(fill["t_done"] - t0, 3),
            },
            "assigned_before_fill": fill["assigned_before"],
            "rebalances_during_run": sum(rebalanced),
            "group_before_fill": fill["group_before"],
            "group_after_run": group_after,
        }
    return run.measured(
        name,
        t0,
        t1,
        workers=workers,
        output_records=len(requests) + len(training) + len(dead),
        requests=len(requests),
        training_log_records=len(training),
        dead_letters=len(dead),
        closed_by_reason=closed_by,
        settings={"session_gap_s": s.session_gap_s, "grace_s": s.grace_s, "idle_close_s": s.idle_close_s},
        group_id=group_id,
        log=str(logs[0]) if workers == 1 else [str(x) for x in logs],
        **extra,
        **_sessions_check(
            run, "partition_stream_time", [(t["session_key"], [float(x) for x in t["ts"]]) for t in training]
        ),
    )


def _faust_batch(run: Run) -> dict:
    from ..runtime.kafka import ensure_topics

    out = f"sessbench-out-faust-{run.token}"
    ensure_topics(run.base, {out: run.partitions})

    def started(proc):
        run.sampler.watch("faust_batch", lambda: _cpu_s(proc.pid))

    try:
        r = _faust_passthrough(
            run.base, "batch", run.src, out, run.n, run.work, run.logs, run.timeout_s, run.broker_pid, started
        )
    finally:
        run.sampler.unwatch("faust_batch")
    recs = _read_all(run.base, out)
    ts = [x.timestamp / 1000.0 for x in recs]
    return run.measured("faust_batch", min(ts), max(ts), output_records=len(recs), log=r["log"])


def _aiokafka(run: Run) -> dict:
    import asyncio

    from ..runtime.kafka import ensure_topics

    out = f"sessbench-out-aiokafka-{run.token}"
    ensure_topics(run.base, {out: run.partitions})
    pid, tid = os.getpid(), threading.get_native_id()  # the pass-through runs on this thread only
    run.sampler.watch("aiokafka", lambda: _thread_cpu_s(pid, tid))
    try:
        r = asyncio.run(_aiokafka_passthrough(run.base, run.src, out, run.n, run.timeout_s))
    finally:
        run.sampler.unwatch("aiokafka")
    if r["forwarded"] < run.n or r["t_first"] is None:
        raise RuntimeError(f"aiokafka forwarded {r['forwarded']}/{run.n} records within {run.timeout_s:.0f} s")
    return run.measured("aiokafka", r["t_first"], r["t_last"], output_records=r["forwarded"])


def _peer_version(python: str, module: str) -> tuple[str | None, str]:
    """(version, '') when `python` imports `module` (and msgpack), else (None, the reason)."""
    code = f"import msgpack, importlib.metadata as m, {module}; print(m.version({module!r}))"
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{python}: {e}"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"{module} not importable by {python} ({last}); install the bench extra: make bench-peers-venv"
    return p.stdout.strip(), ""


def _peer(run: Run, name: str) -> dict:
    """Run one peer script to completion (it stops by itself once it has processed the N clicks, or at
    the end of its bounded input), then read its output topic and its result file."""
    from ..runtime.kafka import ensure_topics
    from . import procs

    module = PEER_MODULES[name]
    version, reason = _peer_version(run.peer_python, module)
    if version is None:
        return {"skipped": reason}
    out = f"sessbench-out-{name}-{run.token}"
    ensure_topics(run.base, {out: run.partitions})
    result = run.logs / f"{name}.result.json"
    result.unlink(missing_ok=True)
    log = run.logs / f"{name}.log"
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONWARNINGS": "ignore",  # authlib's deprecation warning on import is noise in the log
        "BENCH_BOOTSTRAP": run.base.bootstrap_servers,
        "BENCH_SRC": run.src,
        "BENCH_OUT": out,
        "BENCH_N": str(run.n),
        "BENCH_GROUP": f"jump-sessbench-{name}-{run.token}",
        "BENCH_GAP_S": repr(run.gap_s),
        "BENCH_GRACE_S": repr(run.grace_s),
        "BENCH_STATE_DIR": str(run.work / "data" / f"{run.token}-{name}"),
        "BENCH_RESULT": str(result),
    }
    if name == "quix_count":
        env["JUMP_BENCH_QUIX_AGG"] = "count"
    if name.startswith("quix"):
        cmd = [run.peer_python, "-m", "pipeline.devtools.peers.quix_sessions"]
        rule = "key_time"
    else:
        script = ROOT / "pipeline" / "devtools" / "peers" / "bytewax_sessions.py"
        cmd = [run.peer_python, "-m", "bytewax.run", f"{script}:flow", "-w", "1"]
        rule = "all"
    with open(log, "ab") as logf:
        proc = subprocess.Popen(
            cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True
        )
    run.sampler.watch(name, lambda: _cpu_s(proc.pid))
    try:
        proc.wait(timeout=run.timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name} did not finish within {run.timeout_s:.0f} s; log {log}:\n{_tail(log)}") from None
    finally:
        run.sampler.unwatch(name)
        procs.stop(proc)
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"{name} exited with {proc.returncode}; log {log}:\n{_tail(log)}")
    r = json.loads(result.read_text())
    if r["t_n"] is None:
        raise RuntimeError(f"{name} processed {r['consumed']}/{run.n} clicks; log {log}:\n{_tail(log)}")
    recs = _read_all(run.base, out)
    values = [json.loads(x.value) for x in recs]
    counts_only = any(v["ts"] is None for v in values)
    if counts_only:
        got = [(x.key.decode(), [float(v["clicks"])]) for x, v in zip(recs, values)]
    else:
        got = [(x.key.decode(), [float(t) for t in v["ts"]]) for x, v in zip(recs, values)]
    self_cpu = r["cpu_n"] - r["cpu_first"]
    return run.measured(
        name,
        r["t_first"],
        r["t_n"],
        output_records=len(recs),
        version=version,
        pinned=PINNED[module],
        cpu_self_reported_us_per_click=round(self_cpu / run.n * 1e6, 1),
        log=str(log),
        **_sessions_check(run, rule, got, counts_only),
    )


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# --------------------------------------------------------------------------- driver


def peer_python(explicit: str | None = None) -> str:
    """The interpreter of the peer scripts: `explicit`, $JUMP_BENCH_PYTHON, .venv-bench, or this one."""
    if explicit:
        return explicit
    if os.environ.get("JUMP_BENCH_PYTHON"):
        return os.environ["JUMP_BENCH_PYTHON"]
    venv = ROOT / ".venv-bench" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def bench_sessions(
    clicks: int = 200_000,
    keys: int = 5_000,
    partitions: int = 4,
    contenders=CONTENDERS,
    work_dir: str = "runs/bench-sessions",
    json_out: str | None = None,
    png_out: str | None = None,
    bootstrap: str | None = None,
    peer_python_path: str | None = None,
    gap_s: float = 3600.0,
    grace_s: float = 60.0,
    sessionizer_workers=(1,),
) -> dict:
    """Run the sessions benchmark once; returns (and optionally writes as JSON / PNG) the figures.

    `sessionizer_workers` ("1,2" or (1, 2)): the `sessionizer` contender runs once per worker count,
    as `sessionizer` (1 worker) and `sessionizer_x<N>` (N workers); see _sessionizer."""
    from ..runtime.kafka import ensure_topics
    from .broker import EmbeddedBroker
    from .sessions_workload import UNSURE, Workload, check_gaps, generate, sessions

    contenders = expand_contenders(contenders, parse_workers(sessionizer_workers))
    unknown = sorted(c for c in contenders if c not in CONTENDERS and workers_of(c) is None)
    if unknown or not contenders:
        raise ValueError(
            f"--contenders: unknown {unknown}; choose from {', '.join(CONTENDERS)} (or sessionizer_x<N>: N workers)"
        )
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    too_many = [c for c in contenders if (workers_of(c) or 0) > partitions]
    if too_many:
        raise ValueError(f"{', '.join(too_many)}: more sessionizer workers than the {partitions} partitions")
    if not UNSURE[0] <= gap_s <= UNSURE[1] or grace_s < 0:
        # inside the band every gap rule cuts the same sessions (the workload has no gap there)
        raise ValueError(f"the gap must lie in [{UNSURE[0]:g}, {UNSURE[1]:g}] s and the grace be >= 0")
    workload = Workload(clicks=clicks, keys=keys, partitions=partitions)
    data = generate(workload)  # raises on clicks < keys
    if check_gaps(data):
        raise AssertionError("the workload has within-key gaps in the unsure band")
    n = len(data)
    n_sessions = sum(len(s) for s in sessions(data, gap_s).values())
    work = Path(work_dir).resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    python = peer_python(peer_python_path)
    t_run = time.time()
    broker = None
    with contextlib.ExitStack() as stack:
        if bootstrap is None:
            broker = EmbeddedBroker(log_path=str(logs / "tansu.log"))
            broker.start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap
            _log(f"embedded Tansu broker at {bootstrap} (pid {broker.pid})")
        broker_pid = broker.pid if broker is not None else None
        sampler = stack.enter_context(CpuSampler())
        if broker_pid is not None:
            sampler.watch("broker", lambda: _cpu_s(broker_pid))
        # this process (sampler, metric scrapes; the in-process aiokafka pass-through too): the overhead
        # of measuring, reported beside each contender
        sampler.watch("harness", lambda: sum(os.times()[:2]))
        # the whole machine, whose share left over by the contender, broker and harness is other work
        sampler.watch("machine", _machine_busy_s)
        base = bench_settings(bootstrap, partitions, f"jump-sessbench-{token}", work / "data" / token)
        src = f"sessbench-src-{token}"
        ensure_topics(base, {src: partitions})
        msgs = _source_messages(data)
        prod = _produce(base, src, msgs)
        del msgs
        _log(f"{n:,} clicks of {keys:,} users ({n_sessions:,} sessions) produced to {src} in {prod['seconds']:.2f} s")
        run = Run(
            base=base,
            src=src,
            n=n,
            clicks=data,
            partitions=partitions,
            gap_s=gap_s,
            grace_s=grace_s,
            work=work,
            logs=logs,
            token=token,
            broker_pid=broker_pid,
            sampler=sampler,
            timeout_s=60.0 + n / 250.0,
            peer_python=python,
        )
        results = {
            "workload": "sessions",
            "clicks": n,
            "keys": keys,
            "sessions": n_sessions,
            "partitions": partitions,
            "gap_s": gap_s,
            "grace_s": grace_s,
            "bootstrap": bootstrap,
            "embedded_broker": broker is not None,
            "cpus": os.cpu_count(),
            "loadavg_1m_start": round(os.getloadavg()[0], 2),  # other work on the machine skews the figures
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],  # 1, 5, 15 min
            "sessionizer_workers": [workers_of(c) for c in contenders if workers_of(c) is not None],
            "source_topic": src,
            "source_produce": prod,
            "peer_python": python,
            "definitions": DEFINITIONS,
            "contenders": {},
        }
        runners = {"faust_batch": _faust_batch, "aiokafka": _aiokafka}
        for name in contenders:
            _log(f"{name} ...")
            t0 = time.time()
            try:
                if workers_of(name) is not None:
                    r = _sessionizer(run, name)
                else:
                    r = runners[name](run) if name in runners else _peer(run, name)
            except Exception as e:  # one failing contender must not hide the others' figures
                r = {"error": f"{type(e).__name__}: {e}"}
            r["wall_s"] = round(time.time() - t0, 1)
            results["contenders"][name] = r
            if "skipped" in r:
                _log(f"{name}: skipped ({r['skipped']})")
            elif "error" in r:
                _log(f"{name}: FAILED {r['error'][:2000]}")
            else:
                _log(f"{name}: {r['events_per_s']:,.0f} events/s")
        results["source_records_after"] = _source_count(base, src)
        results["wall_s"] = round(time.time() - t_run, 1)
        results["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
        results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["ratios"] = _ratios(results["contenders"])
    if (scaleout := _scaleout(results)) is not None:
        results["scaleout"] = scaleout
    _print(results)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(results, indent=2))
        print(f"wrote {json_out}")
    if png_out:
        print(f"wrote {png_out}" if _png(results, png_out) else f"no chart: no contender ran ({png_out} not written)")
    return results


def _ratios(contenders: dict) -> dict:
    rate = {k: v["events_per_s"] for k, v in contenders.items() if v.get("events_per_s")}
    return {a: {b: round(rate[a] / rate[b], 3) for b in rate} for a in rate}


def _label(name: str) -> str:
    """A contender's name, with its worker count for the sessionizer: `sessionizer_x2 (2 workers)`."""
    w = workers_of(name)
    return name if w is None else f"{name} ({w} worker{'' if w == 1 else 's'})"


def _scaleout(res: dict) -> dict | None:
    """The sessionizer's runs side by side, per worker count (None unless one ran): events/s, the
    speed-up over the fewest workers, CPU per click (all workers together), and where the machine's
    cores went over each run's interval -- on a machine of few cores the workers share them with the
    broker, this harness and any other work, so N workers cannot reach N times one worker's events/s."""
    runs = {n: r for n, r in res["contenders"].items() if workers_of(n) is not None and r.get("events_per_s")}
    if not runs:
        return None
    base = min(runs, key=workers_of)
    out = {"cpus": res["cpus"], "base": base, "runs": {}}
    for n, r in runs.items():
        w = workers_of(n)
        speedup = r["events_per_s"] / runs[base]["events_per_s"]
        out["runs"][n] = {
            "workers": w,
            "events_per_s": r["events_per_s"],
            "speedup": round(speedup, 3),
            "efficiency": round(speedup * workers_of(base) / w, 3),  # speed-up / worker ratio
            "cpu_us_per_click": r["cpu_us_per_click"],  # all of its workers
            "worker_cpu_us_per_click": [p["cpu_us_per_click"] for p in r.get("per_worker", [])] or None,
            "worker_cores_busy": [p["cores_busy"] for p in r.get("per_worker", [])] or None,
            "broker_cpu_us_per_click": r["broker_cpu_us_per_click"],
            "harness_cpu_us_per_click": r["harness_cpu_us_per_click"],
            "cores_busy": r["cores_busy"],
            "sessions_ok": r.get("sessions_ok"),
        }
    out["note"] = (
        f"{res['cpus']} CPUs shared by the sessionizer workers, the broker, this harness (CPU sampler, metric "
        "scrapes, the source copy's writes) and any other work on the machine (cores_busy.other); a worker "
        "is one Python process, so it uses at most one core, and N workers can at best reach N x one "
        "worker's events/s when N cores are free for them alone"
    )
    return out


def _print(res: dict) -> None:
    c = res["contenders"]
    la0 = res.get("loadavg_start") or [res["loadavg_1m_start"]]
    la1 = res.get("loadavg_end") or [res.get("loadavg_1m_end", float("nan"))]
    print(
        f"\njump bench stream --workload sessions: {res['clicks']:,} clicks, {res['keys']:,} users, "
        f"{res['sessions']:,} sessions, {res['partitions']} partitions, gap {res['gap_s']:g} s, grace "
        f"{res['grace_s']:g} s; {'embedded Tansu' if res['embedded_broker'] else res['bootstrap']}, "
        f"{res['cpus']} CPUs, wall {res.get('wall_s', 0):.0f} s, load average (1/5/15 min) "
        f"{'/'.join(f'{x:g}' for x in la0)} at the start, {'/'.join(f'{x:g}' for x in la1)} at the end"
    )
    wn = max([12] + [len(_label(n)) for n in c])
    head = (
        f"{'contender':<{wn}} {'events/s':>9} {'x sessionizer':>13} {'µs/click':>9} {'broker µs':>10} "
        f"{'harness µs':>11} {'out records':>12}  {'closed / expected (rule)':<40} sessions"
    )
    print(head)
    print("-" * (len(head) + 6))
    ref = res["ratios"].get("sessionizer", {})

    def num(v) -> str:
        return "-" if v is None else f"{v:,.1f}"

    for name, r in c.items():
        if "skipped" in r or "error" in r:
            why = f"skipped: {r['skipped']}" if "skipped" in r else f"FAILED: {r['error'].splitlines()[0][:150]}"
            print(f"{_label(name):<{wn}} {why}")
            continue
        x = res["ratios"].get(name, {}).get("sessionizer")
        if "closing_rule" in r:
            closed = f"{r['closed_sessions']:,} / {r['expected_closed']:,} ({r['closing_rule']})"
            d = r["sessions"]
            ok = "ok" if r["sessions_ok"] else f"MISMATCH (missing {d['missing']}, extra {d['extra']})"
        else:
            closed, ok = "- (pass-through)", ""
        print(
            f"{_label(name):<{wn}} {r['events_per_s']:>9,.0f} {'-' if x is None else f'{x:.2f}':>13} "
            f"{num(r['cpu_us_per_click']):>9} {num(r['broker_cpu_us_per_click']):>10} "
            f"{num(r.get('harness_cpu_us_per_click')):>11} {r['output_records']:>12,}  {closed:<40} {ok}"
        )
    ran = [n for n, r in c.items() if r.get("cores_busy")]
    if ran:
        print(f"\ncores busy over each contender's measured interval (of {res['cpus']} CPUs; /proc samples):")
        print(f"{'contender':<{wn}} {'contender':>9} {'broker':>7} {'harness':>8} {'other':>6} {'machine':>8}")
        for n in ran:
            b = c[n]["cores_busy"]
            cells = [b.get(k) for k in ("contender", "broker", "harness", "other", "machine")]
            print(
                f"{_label(n):<{wn}} "
                + " ".join(f"{'-' if v is None else f'{v:.2f}':>{w}}" for v, w in zip(cells, (9, 7, 8, 6, 8)))
            )
    for name, r in c.items():
        if not r.get("per_worker"):
            continue
        sc = r["source_copy"]
        print(
            f"\n{name}: {r['workers']} workers, one consumer group ({r['group_id']}); group stable after "
            f"{sc['group_wait_s']} s, then the {res['clicks']:,} clicks written to its own source topic in "
            f"{sc['fill_seconds']:.2f} s (the last written {sc['fill_done_after_first_request_s']:+.2f} s from the "
            f"first request of the {r['seconds']:.1f} s interval); rebalances in the interval: "
            f"{r['rebalances_during_run']}; the broker's view of the group: {r['group_before_fill']}"
        )
        for p in r["per_worker"]:
            print(
                f"  worker {p['worker']}: partitions {p['partitions']}, {p['clicks_accepted']:,} clicks, "
                f"{p['training_log_records']:,} sessions closed; CPU {num(p['cpu_us_per_click'])} µs/click of "
                f"all N ({num(p['cpu_us_per_own_click'])} per click of its own), {p['cores_busy']} cores busy"
            )
        print(
            f"  sum: {num(r['cpu_us_per_click'])} µs/click; broker {num(r['broker_cpu_us_per_click'])}, "
            f"harness {num(r['harness_cpu_us_per_click'])}"
        )
    so = res.get("scaleout")
    if so and len(so["runs"]) > 1:
        print(f"\nscale-out (speed-up over {so['base']}):")
        for n, v in so["runs"].items():
            b = v["cores_busy"]
            print(
                f"  {_label(n)}: {v['events_per_s']:,.0f} events/s, x{v['speedup']:.2f} (efficiency "
                f"{v['efficiency']:.2f}), {num(v['cpu_us_per_click'])} µs/click; cores busy: workers "
                f"{b['contender']}, broker {b['broker']}, harness {b['harness']}, other {b.get('other', '-')}, "
                f"machine {b['machine']} of {so['cpus']}"
            )
        print(f"  {so['note']}")
    if ref:
        print("\nsessionizer events/s / each contender's: " + ", ".join(f"{k} {v:.2f}" for k, v in ref.items()))
    names = list(res["ratios"])
    if len(names) > 1:
        cw = max([12] + [len(n) + 2 for n in names])
        print("ratios (row / column):")
        print(" " * cw + "".join(f"{b:>{cw}}" for b in names))
        for a in names:
            print(f"{a:<{cw}}" + "".join(f"{res['ratios'][a][b]:>{cw}.2f}" for b in names))
    for name, s in c.items():
        if workers_of(name) is not None and "dead_letters" in s:
            print(
                f"\n{name}: {s['requests']:,} requests, {s['training_log_records']:,} training-log records "
                f"(closed by {s['closed_by_reason']}), {s['dead_letters']} dead letters "
                f"({'ok' if s['dead_letters'] == 0 else 'NOT 0'}); grace {s['settings']['grace_s']:g} s (its "
                "default), idle close off"
            )
    if res.get("source_records_after") != res["clicks"]:
        print(f"WARNING: the source topic holds {res.get('source_records_after')} records, not {res['clicks']}")
    print("\nwhat each contender does:")
    for name, r in c.items():
        if "what_it_does" in r:
            print(f"  {name}: {r['what_it_does']}")
    print("closing rules (sessions_workload.closed_sessions):")
    for name, r in c.items():
        if "closing_rule" in r:
            print(f"  {name}: {r['closing_rule']} -- a session {RULE_TEXT.get(r['closing_rule'], '')}")
    print("definitions:")
    for d in res["definitions"].values():
        print(f"  {d}")


def _png(res: dict, path: str) -> bool:
    """Bar charts of events/s and CPU per click of the contenders that ran; False when none did."""
    names = [k for k, v in res["contenders"].items() if v.get("events_per_s")]
    if not names:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_label(k).replace(" (", "\n(") for k in names]
    rates = [res["contenders"][k]["events_per_s"] for k in names]
    cpu = [res["contenders"][k].get("cpu_us_per_click") or 0.0 for k in names]
    broker = [res["contenders"][k].get("broker_cpu_us_per_click") or 0.0 for k in names]
    harness = [res["contenders"][k].get("harness_cpu_us_per_click") or 0.0 for k in names]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4))
    colors = ["C3" if workers_of(k) is not None else "C0" for k in names]
    bars = a1.bar(labels, rates, color=colors)
    a1.bar_label(bars, labels=[f"{r:,.0f}" for r in rates], fontsize=8)
    a1.set_yscale("log")  # the aiokafka ceiling is 10-50x the others
    a1.set_ylim(10 ** math.floor(math.log10(min(rates))), max(rates) * 2.5)
    a1.set_ylabel("events/s (log scale)")
    a1.set_title("throughput")
    b1 = a2.bar(labels, cpu, color=colors, label="contender (all its workers)")
    a2.bar(labels, broker, bottom=cpu, color="0.75", label="broker")
    a2.bar(labels, harness, bottom=[c + b for c, b in zip(cpu, broker)], color="0.9", label="harness")
    a2.bar_label(b1, labels=[f"{v:,.0f}" for v in cpu], label_type="center", fontsize=8)
    a2.set_ylim(0, max(c + b + h for c, b, h in zip(cpu, broker, harness)) * 1.3)
    a2.set_ylabel("CPU µs per click")
    a2.set_title("CPU per click (contender + broker + harness)")
    a2.legend(fontsize=8, loc="upper center", ncol=3)
    for ax in (a1, a2):
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    skipped = [k for k, v in res["contenders"].items() if not v.get("events_per_s")]
    fig.suptitle(
        f"jump bench stream --workload sessions: {res['clicks']:,} clicks, {res['keys']:,} users, "
        f"{res['partitions']} partitions, {res['cpus']} CPUs"
        + (f" (not run: {', '.join(skipped)})" if skipped else ""),
        fontsize=9,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- CLI


def add_sessionizer_workers_option(bsub) -> None:
    """`jump bench stream --sessionizer-workers 1,2`, added to the `stream` parser that
    stream_bench.add_bench_stream made (call after it): the `sessionizer` contender of
    --workload sessions is expanded to one contender per worker count, then stream_bench runs."""
    p = bsub.choices["stream"]
    p.add_argument(
        "--sessionizer-workers",
        default=None,
        help="sessions: comma-separated worker counts; the sessionizer contender runs once per count, with that "
        "many `jump sessionizer` processes in one consumer group splitting the partitions (contenders "
        "sessionizer, sessionizer_x2, ...; default 1)",
    )
    inner = p.get_default("func")

    def cmd(a) -> int:
        if a.sessionizer_workers is None:
            return inner(a)
        if a.workload != "sessions":
            raise ValueError("--sessionizer-workers: only with --workload sessions")
        contenders = CONTENDERS if a.contenders is None else [c.strip() for c in a.contenders.split(",") if c.strip()]
        a.contenders = ",".join(expand_contenders(contenders, parse_workers(a.sessionizer_workers)))
        return inner(a)

    p.set_defaults(func=cmd)
