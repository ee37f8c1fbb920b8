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
  tick records (they would be written into the shared source topic; they only drive the idle close);
* `faust_batch`: the bare Faust batch pass-through (variant (b2) of the pipeline workload,
  pipeline/devtools/faust_passthrough.py mode `batch`): Faust's floor for reading and re-writing every
  click, no sessionizing;
* `aiokafka`: the bare aiokafka consume -> produce pass-through in this process (variant (a)): the
  ceiling of a Python client on this broker;
* `quix`: Quix Streams session windows (pipeline/devtools/peers/quix_sessions.py), in a subprocess;
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
* ratios: events/s of each contender divided by that of every other one.

No assertion on speed: figures only, indicative on a shared 2-core machine.
"""

from __future__ import annotations

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

from .stream_bench import _aiokafka_passthrough, _cpu_s, _faust_passthrough, _produce

ROOT = Path(__file__).resolve().parents[2]
CONTENDERS = ("sessionizer", "faust_batch", "aiokafka", "quix", "bytewax")
PEER_MODULES = {"quix": "quixstreams", "bytewax": "bytewax"}
PINNED = {"quixstreams": "3.28.1", "bytewax": "0.21.1"}  # the `bench` extra of pyproject.toml

DEFINITIONS = {
    "sessionizer": "sessionizer: N / (Kafka CreateTime of the last inference-request record - CreateTime of the "
    "first), over all partitions; every accepted click yields one request, written after its batch "
    "(JUMP_SESSIONIZER_BATCH clicks at most) is processed",
    "faust_batch": "faust_batch: N / (CreateTime of the last output record - CreateTime of the first) "
    "(the Faust pass-through of the pipeline workload's variant (b2): pipeline/devtools/faust_passthrough.py, "
    "mode batch)",
    "aiokafka": "aiokafka: N / (wall time from the first getmany() that returned records to the moment the last "
    "re-produced record's send future resolved)",
    "peers": "quix, bytewax: N / (wall time at which the N-th source message reached the session window "
    "operator - wall time at which the first source message was decoded), recorded by the peer process",
    "cpu": "cpu µs/click: CPU (user + system) of the contender over its measured interval / N; broker "
    "µs/click: the broker's CPU over the same interval / N (JSON also has harness_cpu_us_per_click: this "
    "process -- CPU sampler, metric scrapes, and the in-process aiokafka pass-through itself)",
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
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **settings.kafka_python_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not (parts := consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} does not exist")
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
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
        return {
            "events_per_s": round(self.n / secs, 1),
            "seconds": round(secs, 3),
            "interval": [round(t0, 3), round(t1, 3)],
            "cpu_s": None if cpu is None else round(cpu, 3),
            "cpu_us_per_click": None if cpu is None else round(cpu / self.n * 1e6, 1),
            "broker_cpu_s": None if broker is None else round(broker, 3),
            "broker_cpu_us_per_click": None if broker is None else round(broker / self.n * 1e6, 1),
            "harness_cpu_us_per_click": None if harness is None else round(harness / self.n * 1e6, 1),
            "what_it_does": NOTES[name],
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


def _sessionizer(run: Run) -> dict:
    from .. import codec
    from ..runtime.kafka import ensure_topics, topic_specs
    from . import procs
    from .broker import free_port

    tag = f"{run.token}-sessionizer"
    topics = {
        f.name: f"{f.default}-sessbench-{tag}" for f in dataclasses.fields(run.base) if f.name.startswith("topic_")
    }
    topics["topic_clicks"] = run.src
    port = free_port()
    s = dataclasses.replace(
        run.base,
        app_id=f"jump-sessbench-{tag}",
        session_gap_s=run.gap_s,
        grace_s=run.grace_s,
        idle_close_s=1e9,  # no wall-clock closes: only event time closes sessions, as in the peers
        tick_interval_s=1e6,  # no tick records into the shared source topic (they only drive the idle close)
        data_dir=str(run.work / "data" / tag / "{conf.id}"),
        metrics_port=port,
        metrics_addr="127.0.0.1",
        log_level="info",
        **topics,
    )
    (run.work / "data" / tag).mkdir(parents=True, exist_ok=True)
    ensure_topics(s, topic_specs(s))
    log = run.logs / "sessionizer.log"
    log.unlink(missing_ok=True)
    proc = procs.start_worker("sessionizer", s, log)
    run.sampler.watch("sessionizer", lambda: _cpu_s(proc.pid))
    try:
        procs.wait_metrics(port, proc, 120, log)
        last = [time.monotonic()]

        def done() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"sessionizer exited with {proc.returncode}; log {log}:\n{_tail(log)}")
            got = procs.metric_sum(procs.scrape(port), "jump_clicks_consumed_total")
            if time.monotonic() - last[0] > 5:
                _log(f"sessionizer: {int(got):,}/{run.n:,} clicks consumed")
                last[0] = time.monotonic()
            return got >= run.n

        # the end is only detected here; the figures come from the request records' timestamps
        procs.wait_for(done, run.timeout_s, 0.5, f"{run.n} clicks consumed by the sessionizer")
        metrics = procs.scrape(port)
    finally:
        run.sampler.unwatch("sessionizer")
        procs.stop(proc)
    requests = _read_all(s, s.topic_requests)
    training = [codec.decode("training_log", r.value) for r in _read_all(s, s.topic_training_log)]
    dead = _read_all(s, s.topic_dead_letters)
    if not requests:
        raise RuntimeError(f"sessionizer wrote no request; log {log}:\n{_tail(log)}")
    ts = [r.timestamp / 1000.0 for r in requests]
    closed_by = {
        k.split('reason="', 1)[1].split('"', 1)[0]: int(v)
        for k, v in metrics.items()
        if k.startswith("jump_sessions_closed_total{")
    }
    return run.measured(
        "sessionizer",
        min(ts),
        max(ts),
        output_records=len(requests) + len(training) + len(dead),
        requests=len(requests),
        training_log_records=len(training),
        dead_letters=len(dead),
        closed_by_reason=closed_by,
        settings={"session_gap_s": s.session_gap_s, "grace_s": s.grace_s, "idle_close_s": s.idle_close_s},
        log=str(log),
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
    if name == "quix":
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
) -> dict:
    """Run the sessions benchmark once; returns (and optionally writes as JSON / PNG) the figures."""
    from .. import codec
    from ..config import Settings
    from ..runtime.kafka import ensure_topics, wait_for_broker
    from .broker import EmbeddedBroker
    from .sessions_workload import UNSURE, Workload, check_gaps, generate, sessions

    contenders = tuple(contenders)
    unknown = sorted(set(contenders) - set(CONTENDERS))
    if unknown or not contenders:
        raise ValueError(f"--contenders: unknown {unknown}; choose from {', '.join(CONTENDERS)}")
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
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
        kafka_env = {k: v for k, v in os.environ.items() if k.startswith("KAFKA_")}
        base = Settings.from_env(
            env=kafka_env,
            bootstrap_servers=bootstrap,
            partitions=partitions,
            output_partitions=partitions,
            app_id=f"jump-sessbench-{token}",
            data_dir=str(work / "data" / token / "{conf.id}"),
            log_level="warning",
        )
        (work / "data" / token).mkdir(parents=True, exist_ok=True)
        wait_for_broker(base, 30)
        src = f"sessbench-src-{token}"
        ensure_topics(base, {src: partitions})
        msgs = [
            (c.key.encode(), codec.encode_click(c.key, c.item, c.ts, c.event_id, key_field="user"), round(c.ts * 1000))
            for c in data
        ]
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
            "source_topic": src,
            "source_produce": prod,
            "peer_python": python,
            "definitions": DEFINITIONS,
            "contenders": {},
        }
        runners = {"sessionizer": _sessionizer, "faust_batch": _faust_batch, "aiokafka": _aiokafka}
        for name in contenders:
            _log(f"{name} ...")
            t0 = time.time()
            try:
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
    results["ratios"] = _ratios(results["contenders"])
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


def _print(res: dict) -> None:
    c = res["contenders"]
    print(
        f"\njump bench stream --workload sessions: {res['clicks']:,} clicks, {res['keys']:,} users, "
        f"{res['sessions']:,} sessions, {res['partitions']} partitions, gap {res['gap_s']:g} s, grace "
        f"{res['grace_s']:g} s; {'embedded Tansu' if res['embedded_broker'] else res['bootstrap']}, "
        f"{res['cpus']} CPUs, wall {res.get('wall_s', 0):.0f} s, load average (1 min) "
        f"{res['loadavg_1m_start']:g} at the start, {res.get('loadavg_1m_end', float('nan')):g} at the end"
    )
    head = (
        f"{'contender':<12} {'events/s':>9} {'x sessionizer':>13} {'µs/click':>9} {'broker µs':>10} "
        f"{'out records':>12}  {'closed / expected (rule)':<40} sessions"
    )
    print(head)
    print("-" * (len(head) + 6))
    ref = res["ratios"].get("sessionizer", {})
    for name, r in c.items():
        if "skipped" in r or "error" in r:
            why = f"skipped: {r['skipped']}" if "skipped" in r else f"FAILED: {r['error'].splitlines()[0][:150]}"
            print(f"{name:<12} {why}")
            continue
        x = res["ratios"].get(name, {}).get("sessionizer")
        us = "-" if r["cpu_us_per_click"] is None else f"{r['cpu_us_per_click']:,.1f}"
        bus = "-" if r["broker_cpu_us_per_click"] is None else f"{r['broker_cpu_us_per_click']:,.1f}"
        if "closing_rule" in r:
            closed = f"{r['closed_sessions']:,} / {r['expected_closed']:,} ({r['closing_rule']})"
            d = r["sessions"]
            ok = "ok" if r["sessions_ok"] else f"MISMATCH (missing {d['missing']}, extra {d['extra']})"
        else:
            closed, ok = "- (pass-through)", ""
        print(
            f"{name:<12} {r['events_per_s']:>9,.0f} {'-' if x is None else f'{x:.2f}':>13} {us:>9} {bus:>10} "
            f"{r['output_records']:>12,}  {closed:<40} {ok}"
        )
    if ref:
        print("\nsessionizer events/s / each contender's: " + ", ".join(f"{k} {v:.2f}" for k, v in ref.items()))
    names = list(res["ratios"])
    if len(names) > 1:
        print("ratios (row / column):")
        print(" " * 12 + "".join(f"{b:>12}" for b in names))
        for a in names:
            print(f"{a:<12}" + "".join(f"{res['ratios'][a][b]:>12.2f}" for b in names))
    s = c.get("sessionizer", {})
    if "dead_letters" in s:
        print(
            f"\nsessionizer: {s['requests']:,} requests, {s['training_log_records']:,} training-log records "
            f"(closed by {s['closed_by_reason']}), {s['dead_letters']} dead letters "
            f"({'ok' if s['dead_letters'] == 0 else 'NOT 0'}); grace {s['settings']['grace_s']:g} s (its default), "
            "idle close off"
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

    rates = [res["contenders"][k]["events_per_s"] for k in names]
    cpu = [res["contenders"][k].get("cpu_us_per_click") or 0.0 for k in names]
    broker = [res["contenders"][k].get("broker_cpu_us_per_click") or 0.0 for k in names]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = ["C3" if k == "sessionizer" else "C0" for k in names]
    bars = a1.bar(names, rates, color=colors)
    a1.bar_label(bars, labels=[f"{r:,.0f}" for r in rates], fontsize=8)
    a1.set_yscale("log")  # the aiokafka ceiling is 10-50x the others
    a1.set_ylim(10 ** math.floor(math.log10(min(rates))), max(rates) * 2.5)
    a1.set_ylabel("events/s (log scale)")
    a1.set_title("throughput")
    b1 = a2.bar(names, cpu, color=colors, label="contender")
    a2.bar(names, broker, bottom=cpu, color="0.75", label="broker")
    a2.bar_label(b1, labels=[f"{v:,.0f}" for v in cpu], label_type="center", fontsize=8)
    a2.set_ylim(0, max(c + b for c, b in zip(cpu, broker)) * 1.2)
    a2.set_ylabel("CPU µs per click")
    a2.set_title("CPU per click (contender + broker)")
    a2.legend(fontsize=8, loc="upper center")
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
