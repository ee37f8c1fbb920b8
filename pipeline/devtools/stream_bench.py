"""`jump bench stream`: events/s of the stream against bare Kafka and bare Faust ceilings.

One run, one broker (an embedded Tansu broker unless `bootstrap` / $KAFKA_BOOTSTRAP_SERVERS is
given), N synthetic clicks (jump_core.data.synth, time-sorted, encoded as the pipeline's input). The
clicks are produced once to a source topic, then measured side by side:

* (a) bare aiokafka consume -> produce pass-through in this process (the ceiling);
* (b) a minimal Faust app (the pipeline's app settings) whose agent re-sends every value one by
  one (`async for value in stream: await out.send(value=value)`), in a subprocess
  (`python -m pipeline.devtools.faust_passthrough`);
* (b2) the same with the pipeline's batch hot path (`stream.take_events` + `app.producer.send`);
* (c) the full pipeline (sessionizer + inference workers, one JUMP checkpoint with random weights
  per dimension in `dims`), fed by a replay of the same clicks after a warm-up.

Prints a table (events/s, ratios to (a) and (b), click -> prediction latency) with the
definitions of every figure, the inference batch-size distribution and the workers' CPU time,
and writes it all as JSON when asked. No assertions: figures only (the target is (c) >= 1.0 x (b)).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

DEFINITIONS = {
    "a": "(a) aiokafka: N / (wall time from the first getmany() that returned records to the moment the "
    "last re-produced record's send future resolved, acks=1); in-process AIOKafkaConsumer (manual "
    "assign, from the beginning, getmany max_records=100000) -> AIOKafkaProducer (linger_ms=5, acks=1)",
    "b": "(b) Faust per-event: N / (Kafka CreateTime of the last output record - CreateTime of the first "
    "output record), over all output partitions; worker start-up and consumer-group join are excluded",
    "b2": "(b2) Faust batch: as (b), agent = stream.take_events(1000, within=0.05) + app.producer.send",
    "c": "(c) pipeline: N / (emit_ts of the last prediction - wall time just before the first click of the "
    "replay was produced); predictions counted by consuming jump-predictions, deduplicated by key, "
    "warm-up records excluded; latency = emit_ts - ingest_ts (click's Kafka timestamp) per prediction",
    "out_span": "out-span: N / (last - first output record timestamp: CreateTime for (a), (b), (b2); "
    "emit_ts for (c)) -- the same steady-state yardstick for every variant",
    "cpu": "cpu_s: user+system CPU seconds of the process tree during the measured interval "
    "(broker, workers, this process)",
}

_WARM_SESSIONS, _WARM_CLICKS = 40, 5


# --------------------------------------------------------------------------- small helpers


def _log(msg: str) -> None:
    print(f"[bench stream {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _cpu_s(pid: int | None) -> float | None:
    """User+system CPU seconds of `pid` and its live descendants (Linux /proc), None if unknown."""
    if pid is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total, stack, seen = 0.0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            parts = stat[stat.rindex(")") + 2 :].split()
            total += (int(parts[11]) + int(parts[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            if p == pid:
                return None
    return total


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[i]


# --------------------------------------------------------------------------- data


def _clicks(
    n: int, work: Path, span_days: float = 30.0, users: int | None = None
) -> tuple[list[tuple[bytes, bytes]], list[str], float]:
    """N synthetic clicks, time-sorted, as (key, value) input messages; the item vocabulary; first ts."""
    from jump_core.data.readers import read_clicks
    from jump_core.data.synth import SynthConfig, write_csv

    from ..codec import encode_click

    config = SynthConfig(clicks=n, seed=0, span_days=span_days, n_users=users)
    default = config == SynthConfig(clicks=n, seed=0)
    csv = work / (f"synth_{n}.csv" if default else f"synth_{n}_u{config.users}_s{span_days:g}.csv")
    if not csv.exists():
        _log(f"generating {n:,} synthetic clicks ({config.users:,} users, {span_days:g} days) -> {csv}")
        write_csv(config, csv)
    rows = list(read_clicks("csv", str(csv), session_col="session_id", item_col="item_id", time_col="timestamp"))
    order = sorted(range(len(rows)), key=lambda i: rows[i][2])  # stable, like `jump replay`
    msgs = []
    for j, i in enumerate(order):
        key, item, ts = rows[i]
        msgs.append((key.encode(), encode_click(key, item, ts, f"bench:{j}", "session")))
    items = sorted({r[1] for r in rows})
    return msgs, items, rows[order[0]][2]


def _waves(msgs: list[tuple[bytes, bytes]], window: int) -> dict:
    """Per window of `window` consecutive clicks, the most clicks of one session (mean, max): the number
    of sequential steps a per-session-ordered micro-batch of that size needs."""
    from collections import Counter

    w = [max(Counter(k for k, _ in msgs[i : i + window]).values()) for i in range(0, len(msgs), window)]
    return {"window": window, "mean": round(sum(w) / len(w), 2), "max": max(w)}


def _warmup_clicks(items: list[str], first_ts: float) -> list[tuple[bytes, bytes]]:
    """Clicks of short `warmup-*` sessions, all before the first measured click (event time)."""
    from ..codec import encode_click

    out = []
    t0 = first_ts - 600.0
    for c in range(_WARM_CLICKS):
        for s in range(_WARM_SESSIONS):
            key = f"warmup-{s}"
            out.append(
                (
                    key.encode(),
                    encode_click(
                        key, items[(s * 7 + c) % len(items)], t0 + c * 30.0 + s * 0.01, f"warmup:{s}:{c}", "session"
                    ),
                )
            )
    return out


def _produce(settings, topic: str, msgs: list[tuple]) -> dict:
    """Send the messages in order with kafka-python (acks=1, no idempotence: Tansu lacks it) and flush.
    Each message is (key, value), or (key, value, timestamp_ms) to set its Kafka timestamp."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        **settings.kafka_python_kwargs(),
        client_id="jump-bench-producer",
        enable_idempotence=False,
        acks=1,
        linger_ms=5,
        batch_size=256 * 1024,
        retries=5,
        max_in_flight_requests_per_connection=1,
    )
    errors = []
    try:
        t0 = time.time()
        for m in msgs:
            ts_ms = m[2] if len(m) > 2 else None
            producer.send(topic, key=m[0], value=m[1], timestamp_ms=ts_ms).add_errback(errors.append)
        producer.flush()
        t1 = time.time()
    finally:
        producer.close()
    if errors:
        raise RuntimeError(f"producing to {topic}: {len(errors)} failed: {errors[0]!r}")
    return {
        "t_first": t0,
        "t_done": t1,
        "seconds": round(t1 - t0, 3),
        "events_per_s": round(len(msgs) / max(t1 - t0, 1e-9), 1),
    }


def _consume(
    settings, topic: str, *, want: int, timeout_s: float, key_of=None, progress: str | None = None, stop=None
) -> list:
    """kafka-python ConsumerRecords of `topic` (all partitions, from the beginning) until `want` distinct
    records (by key_of(record), default: every record counts), or timeout, or stop() is truthy."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **settings.kafka_python_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=250,
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
        records, keys = [], set()
        last_print = time.monotonic()
        while time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=250, max_records=100_000).values():
                for r in recs:
                    if key_of is None:
                        records.append(r)
                    else:
                        k = key_of(r)
                        if k is not None and k not in keys:
                            keys.add(k)
                            records.append(r)
            if len(records) >= want:
                break
            if stop is not None and stop():
                break
            if progress and time.monotonic() - last_print > 5:
                last_print = time.monotonic()
                _log(f"{progress}: {len(records):,}/{want:,}")
        return records
    finally:
        consumer.close()


# --------------------------------------------------------------------------- (a) aiokafka


async def _aiokafka_passthrough(settings, src: str, out: str, n: int, timeout_s: float) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    kw = settings.aiokafka_kwargs()
    consumer = AIOKafkaConsumer(
        **kw,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    producer = AIOKafkaProducer(**kw, linger_ms=5, acks=1, enable_idempotence=False, max_batch_size=1 << 18)
    await consumer.start()
    await producer.start()
    try:
        parts = consumer.partitions_for_topic(src) or set()
        tps = [TopicPartition(src, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        futures, got, t_first = [], 0, None
        deadline = time.monotonic() + timeout_s
        send = producer.send
        while got < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=100_000)
            for tp, recs in batch.items():
                if recs and t_first is None:
                    t_first = time.time()
                for r in recs:
                    futures.append(await send(out, r.value, key=r.key, partition=tp.partition))
                got += len(recs)
        await asyncio.gather(*futures)
        t_last = time.time()
        return {"forwarded": got, "t_first": t_first, "t_last": t_last}
    finally:
        await producer.stop()
        await consumer.stop()


# --------------------------------------------------------------------------- (b) Faust


def _faust_passthrough(
    settings,
    mode: str,
    src: str,
    out: str,
    n: int,
    work: Path,
    logs: Path,
    timeout_s: float,
    broker_pid: int | None,
    on_start=None,
) -> dict:
    """Run the Faust pass-through subprocess until `n` records are forwarded; `on_start(proc)`, when
    given, is called right after the process starts (the sessions benchmark samples its CPU)."""
    from ..config import settings_env
    from . import procs

    log_path = logs / f"faust-{mode}.log"
    log_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        **settings_env(settings),
        "BENCH_MODE": mode,
        "BENCH_SRC": src,
        "BENCH_OUT": out,
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            [
                "timeout",
                "-s",
                "KILL",
                str(int(timeout_s) + 30),
                sys.executable,
                "-m",
                "pipeline.devtools.faust_passthrough",
            ],
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    if on_start is not None:
        on_start(proc)
    try:
        cpu0 = (_cpu_s(proc.pid), _cpu_s(broker_pid), _self_cpu())
        recs = _consume(
            settings,
            out,
            want=n,
            timeout_s=timeout_s,
            progress=f"(b {mode}) output records",
            stop=lambda: proc.poll() is not None,
        )
        cpu1 = (_cpu_s(proc.pid), _cpu_s(broker_pid), _self_cpu())
    finally:
        procs.stop(proc, grace_s=2.0)
    if len(recs) < n:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"Faust pass-through ({mode}) forwarded {len(recs)}/{n} records; log {log_path}:\n{tail}")
    ts = [r.timestamp / 1000.0 for r in recs]
    span = max(ts) - min(ts)
    return {
        "events_per_s": round(n / max(span, 1e-3), 1),
        "out_span_events_per_s": round(n / max(span, 1e-3), 1),
        "seconds": round(span, 3),
        "records": len(recs),
        "log": str(log_path),
        "cpu_s": _cpu_delta(cpu0, cpu1, "faust"),
    }


def _cpu_delta(before, after, *names) -> dict:
    labels = [*list(names), "broker", "bench"]
    out = {}
    for label, a, b in zip(labels, before, after):
        if a is not None and b is not None:
            out[label] = round(b - a, 2)
    return out


# --------------------------------------------------------------------------- (c) pipeline


def _checkpoint(path: Path, items: list[str], dim: int) -> None:
    import torch

    from jump_core.artifacts.checkpoint import save_checkpoint
    from jump_core.model import Jump, JumpConfig

    torch.manual_seed(0)
    model = Jump(JumpConfig(n_items=len(items) + 1, dim=dim))
    save_checkpoint(path, model, items, "bench")


def _hist(samples_before: dict, samples_after: dict, name: str) -> dict:
    """Delta of a Prometheus histogram between two scrapes: per-bucket counts, count, sum, mean."""

    def series(samples):
        b = {}
        for k, v in samples.items():
            if k.startswith(name + "_bucket{"):
                le = k.split('le="', 1)[1].split('"', 1)[0]
                b[float(le)] = b.get(float(le), 0.0) + v
        return b

    b0, b1 = series(samples_before), series(samples_after)
    les = sorted(b1)
    cum = [b1[le] - b0.get(le, 0.0) for le in les]
    buckets, prev = {}, 0.0
    for le, c in zip(les, cum):
        label = "+Inf" if le == float("inf") else f"<={le:g}"
        buckets[label] = round(c - prev)
        prev = c
    from .procs import metric_sum

    count = metric_sum(samples_after, name + "_count") - metric_sum(samples_before, name + "_count")
    total = metric_sum(samples_after, name + "_sum") - metric_sum(samples_before, name + "_sum")
    return {
        "buckets": {k: v for k, v in buckets.items() if v},
        "count": int(count),
        "sum": round(total, 4),
        "mean": round(total / count, 4) if count else None,
    }


def _pipeline(
    base,
    dim: int,
    n: int,
    msgs,
    warm,
    items,
    partitions: int,
    work: Path,
    logs: Path,
    token: str,
    broker_pid: int | None,
    timeout_s: float,
    runtime: str = "faust",
) -> dict:
    from .. import codec
    from ..runtime.kafka import ensure_topics, topic_specs
    from . import procs
    from .broker import free_port

    ckpt = work / f"bench_d{dim}.ckpt"
    _checkpoint(ckpt, items, dim)
    tag = f"{token}-d{dim}" + ("" if runtime == "faust" else f"-{runtime}")
    topics = {f.name: f"{f.default}-bench-{tag}" for f in dataclasses.fields(base) if f.name.startswith("topic_")}
    s = dataclasses.replace(
        base,
        app_id=f"jump-bench-{tag}",
        partitions=partitions,
        output_partitions=partitions,
        tick_interval_s=1.0,
        idle_close_s=3.0,
        checkpoint=str(ckpt),
        model_dir=str(work / "models" / tag),
        data_dir=str(work / "data" / tag / "{conf.id}"),
        metrics_addr="127.0.0.1",
        log_level="info",
        inference_runtime=runtime,
        **topics,
    )
    (work / "data" / tag).mkdir(parents=True, exist_ok=True)
    ensure_topics(s, topic_specs(s))
    sess_port, inf_port = free_port(), free_port()
    while inf_port == sess_port:
        inf_port = free_port()
    s_sess, s_inf = dataclasses.replace(s, metrics_port=sess_port), dataclasses.replace(s, metrics_port=inf_port)
    log_sess, log_inf = logs / f"sessionizer-d{dim}.log", logs / f"inference-d{dim}.log"
    sess = inf = None
    try:
        t_start = time.time()
        log_sess.unlink(missing_ok=True)
        log_inf.unlink(missing_ok=True)
        sess = procs.start_worker("sessionizer", s_sess, log_sess)
        inf = procs.start_worker("inference", s_inf, log_inf)
        procs.wait_metrics(sess_port, sess, 90, log_sess)
        procs.wait_metrics(inf_port, inf, 90, log_inf)
        _log(f"(c d={dim}) workers up ({time.time() - t_start:.1f} s); warm-up: {len(warm)} clicks")
        _produce(s, s.topic_clicks, warm)

        def warmed():
            for _p, proc, lp in ((sess_port, sess, log_sess), (inf_port, inf, log_inf)):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"worker exited with {proc.returncode}; log {lp}:\n{lp.read_text(errors='replace')[-2000:]}"
                    )
            return procs.metric_sum(procs.scrape(inf_port), "jump_predictions_total") >= len(warm)

        procs.wait_for(warmed, 120, 0.5, "the warm-up predictions")
        time.sleep(1.0)
        _log(f"(c d={dim}) warm ({time.time() - t_start:.1f} s after start); replaying {n:,} clicks")
        m_sess0, m_inf0 = procs.scrape(sess_port), procs.scrape(inf_port)
        cpu0 = (_cpu_s(sess.pid), _cpu_s(inf.pid), _cpu_s(broker_pid), _self_cpu())
        prod = _produce(s, s.topic_clicks, msgs)
        _log(f"(c d={dim}) replay: {n:,} clicks produced in {prod['seconds']:.2f} s ({prod['events_per_s']:,.0f}/s)")
        want = len(warm) + n
        last = [0.0, time.monotonic()]

        def done():
            for proc, lp in ((sess, log_sess), (inf, log_inf)):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"worker exited with {proc.returncode}; log {lp}:\n{lp.read_text(errors='replace')[-2000:]}"
                    )
            got = procs.metric_sum(procs.scrape(inf_port), "jump_predictions_total")
            if time.monotonic() - last[1] > 5:
                _log(f"(c d={dim}) predictions {int(got - len(warm)):,}/{n:,}")
                last[1] = time.monotonic()
            return got >= want

        try:
            procs.wait_for(done, timeout_s, 0.5, f"{n} predictions")
        except TimeoutError as e:
            _log(f"(c d={dim}) {e}")
        cpu1 = (_cpu_s(sess.pid), _cpu_s(inf.pid), _cpu_s(broker_pid), _self_cpu())
        m_sess1, m_inf1 = procs.scrape(sess_port), procs.scrape(inf_port)
    finally:
        procs.stop(sess)
        procs.stop(inf)

    def key_of(r):
        return None if r.key is None or r.key.startswith(b"warmup-") else r.key

    recs = _consume(s, s.topic_predictions, want=n, timeout_s=60, key_of=key_of)
    preds = [codec.decode("prediction", r.value) for r in recs]
    emit = [p["emit_ts"] for p in preds]
    lat = [p["emit_ts"] - p["ingest_ts"] for p in preds]
    t_last = max(emit) if emit else float("nan")
    seconds = t_last - prod["t_first"]
    span = (max(emit) - min(emit)) if len(emit) > 1 else float("nan")
    batch = _hist(m_inf0, m_inf1, "jump_inference_batch_size")
    sbatch = _hist(m_sess0, m_sess1, "jump_sessionizer_batch_seconds")
    compute = _hist(m_inf0, m_inf1, "jump_inference_compute_seconds")
    qwait = _hist(m_inf0, m_inf1, "jump_inference_queue_wait_seconds")
    return {
        "dim": dim,
        "predictions": len(preds),
        "complete": len(preds) >= n,
        "events_per_s": round(len(preds) / seconds, 1) if emit and seconds > 0 else 0.0,
        "out_span_events_per_s": round(len(preds) / span, 1) if len(emit) > 1 and span > 0 else 0.0,
        "seconds": round(seconds, 3),
        "replay": prod,
        "latency_p50_s": round(_pct(lat, 50), 4),
        "latency_p99_s": round(_pct(lat, 99), 4),
        "latency_max_s": round(max(lat), 4) if lat else None,
        "inference_batch_size": batch,
        "inference_compute_seconds": compute,
        "inference_queue_wait_seconds": qwait,
        "sessionizer_batch_seconds": sbatch,
        "sessionizer_batch_seconds_mean": sbatch["mean"],
        "cpu_s": _cpu_delta(cpu0, cpu1, "sessionizer", "inference"),
        "logs": {"sessionizer": str(log_sess), "inference": str(log_inf)},
        "topics": topics,
        "checkpoint": str(ckpt),
    }


# --------------------------------------------------------------------------- driver


def bench_stream(
    clicks: int = 100_000,
    partitions: int = 1,
    work_dir: str = "runs/bench-stream",
    json_out: str | None = None,
    dims=(16, 100),
    bootstrap: str | None = None,
    faust_batch: bool = True,
    span_days: float = 30.0,
    users: int | None = None,
    runtimes=("faust", "aiokafka"),
) -> dict:
    """Run the benchmark once; returns (and optionally writes as JSON) the figures.

    `span_days` / `users` go to jump_core.data.synth.SynthConfig (defaults: its own, 30 days and
    clicks // 40 users). More users over a short span means more concurrent sessions, hence fewer
    clicks of one session in one inference micro-batch.
    """
    from ..config import Settings
    from ..runtime.kafka import ensure_topics, wait_for_broker
    from .broker import EmbeddedBroker

    if clicks < 1 or partitions < 1:
        raise ValueError("clicks and partitions must be >= 1")
    dims = tuple(int(d) for d in dims)
    work = Path(work_dir).resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    t_run = time.time()
    broker = None
    if bootstrap is None:
        broker = EmbeddedBroker(log_path=str(logs / "tansu.log"))
        broker.start()
        bootstrap = broker.bootstrap
        _log(f"embedded Tansu broker at {bootstrap} (pid {broker.pid})")
    broker_pid = broker.pid if broker is not None else None
    try:
        kafka_env = {k: v for k, v in os.environ.items() if k.startswith("KAFKA_")}
        base = Settings.from_env(
            env=kafka_env,
            bootstrap_servers=bootstrap,
            partitions=partitions,
            output_partitions=partitions,
            app_id=f"jump-bench-{token}",
            data_dir=str(work / "data" / token / "{conf.id}"),
            log_level="warning",
        )
        (work / "data" / token).mkdir(parents=True, exist_ok=True)
        wait_for_broker(base, 30)
        msgs, items, first_ts = _clicks(clicks, work, span_days, users)
        warm = _warmup_clicks(items, first_ts)
        n = len(msgs)
        timeout_s = 60.0 + n / 250.0
        src, out_a = f"bench-src-{token}", f"bench-out-a-{token}"
        out_b, out_b2 = f"bench-out-b-{token}", f"bench-out-b2-{token}"
        ensure_topics(base, dict.fromkeys((src, out_a, out_b, out_b2), partitions))
        prod = _produce(base, src, msgs)
        _log(
            f"{n:,} clicks ({len(items):,} items) produced to {src} in {prod['seconds']:.2f} s "
            f"({prod['events_per_s']:,.0f}/s, kafka-python)"
        )
        waves = _waves(msgs, 256)
        _log(
            f"time-sorted stream: {waves['mean']:.1f} clicks of one session per 256 consecutive clicks "
            f"(mean of the per-window maximum; max {waves['max']})"
        )
        results = {
            "clicks": n,
            "partitions": partitions,
            "dims": list(dims),
            "bootstrap": bootstrap,
            "synth": {"span_days": span_days, "users": users, "items": len(items), "max_session_clicks_per_256": waves},
            "embedded_broker": broker is not None,
            "cpus": os.cpu_count(),
            "source_topic": src,
            "source_produce": prod,
            "definitions": DEFINITIONS,
            "variants": {},
        }
        v = results["variants"]

        _log("(a) aiokafka pass-through")
        cpu0 = (_cpu_s(broker_pid), _self_cpu())
        r = asyncio.run(_aiokafka_passthrough(base, src, out_a, n, timeout_s))
        cpu1 = (_cpu_s(broker_pid), _self_cpu())
        if r["forwarded"] < n or r["t_first"] is None:
            raise RuntimeError(f"(a) forwarded {r['forwarded']}/{n} records within {timeout_s:.0f} s")
        secs = r["t_last"] - r["t_first"]
        ts = [x.timestamp / 1000.0 for x in _consume(base, out_a, want=n, timeout_s=60)]
        span = max(ts) - min(ts)
        v["a_aiokafka"] = {
            "events_per_s": round(n / max(secs, 1e-3), 1),
            "out_span_events_per_s": round(n / max(span, 1e-3), 1),
            "seconds": round(secs, 3),
            "cpu_s": _cpu_delta(cpu0, cpu1),
        }
        _log(f"(a) {v['a_aiokafka']['events_per_s']:,.0f} events/s")

        modes = [("b_faust", "plain")] + ([("b2_faust_batch", "batch")] if faust_batch else [])
        for name, mode in modes:
            _log(f"({name.split('_')[0]}) Faust pass-through ({mode})")
            v[name] = _faust_passthrough(
                base, mode, src, out_b if mode == "plain" else out_b2, n, work, logs, timeout_s, broker_pid
            )
            _log(f"({name.split('_')[0]}) {v[name]['events_per_s']:,.0f} events/s")

        for dim in dims:
            for runtime in runtimes:
                name = f"c_pipeline_d{dim}" + ("" if runtime == "faust" else f"_{runtime}")
                _log(f"(c) pipeline, JUMP d={dim}, inference runtime {runtime}")
                v[name] = r = _pipeline(
                    base, dim, n, msgs, warm, items, partitions, work, logs, token, broker_pid, timeout_s, runtime
                )
                r["inference_runtime"] = runtime
                _log(
                    f"(c d={dim}, {runtime}) {r['events_per_s']:,.0f} events/s, {r['predictions']:,}/{n:,} predictions"
                )

        a_rate, b_rate = v["a_aiokafka"]["events_per_s"], v["b_faust"]["events_per_s"]
        for r in v.values():
            r["x_a"] = round(r["events_per_s"] / a_rate, 3) if a_rate else None
            r["x_b"] = round(r["events_per_s"] / b_rate, 3) if b_rate else None
        results["target"] = {
            name: {"x_b": r["x_b"], "met": bool(r["x_b"] is not None and r["x_b"] >= 1.0)}
            for name, r in v.items()
            if name.startswith("c_")
        }
        results["wall_s"] = round(time.time() - t_run, 1)
    finally:
        if broker is not None:
            broker.stop()
    _print(results)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(results, indent=2))
        print(f"wrote {json_out}")
    return results


def _print(res: dict) -> None:
    v = res["variants"]
    labels = {
        "a_aiokafka": "(a) aiokafka pass-through",
        "b_faust": "(b) Faust pass-through, per event",
        "b2_faust_batch": "(b2) Faust pass-through, take_events",
    }
    syn = res.get("synth", {})
    print(
        f"\njump bench stream: {res['clicks']:,} clicks, {res['partitions']} partition(s), "
        f"{'embedded Tansu' if res['embedded_broker'] else res['bootstrap']}, {res['cpus']} CPUs, "
        f"wall {res.get('wall_s', 0):.0f} s"
    )
    if syn:
        w = syn["max_session_clicks_per_256"]
        print(
            f"synthetic clicks: span {syn['span_days']:g} days, users {syn['users'] or 'clicks // 40'}, "
            f"{syn['items']:,} items; clicks of one session per 256 consecutive clicks: mean {w['mean']}, "
            f"max {w['max']}"
        )
    head = (
        f"{'variant':<38} {'events/s':>10} {'x (a)':>7} {'x (b)':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'out-span/s':>11}  cpu s"
    )
    print(head)
    print("-" * len(head) + "------------------------")
    for name, r in v.items():
        label = labels.get(name, f"(c) pipeline, d={r.get('dim')}, inference {r.get('inference_runtime', 'faust')}")
        p50 = f"{r['latency_p50_s'] * 1000:8.0f}" if "latency_p50_s" in r else f"{'-':>8}"
        p99 = f"{r['latency_p99_s'] * 1000:8.0f}" if "latency_p99_s" in r else f"{'-':>8}"
        cpu = " ".join(f"{k}={x:g}" for k, x in r.get("cpu_s", {}).items())
        print(
            f"{label:<38} {r['events_per_s']:>10,.0f} {r['x_a']:>7.2f} {r['x_b']:>7.2f} {p50} {p99} "
            f"{r['out_span_events_per_s']:>11,.0f}  {cpu}"
        )
    for name, r in v.items():
        if not name.startswith("c_"):
            continue
        b = r["inference_batch_size"]
        print(
            f"\n(c d={r['dim']}) predictions {r['predictions']:,}/{res['clicks']:,}; replay produced "
            f"{r['replay']['events_per_s']:,.0f} clicks/s ({r['replay']['seconds']:.2f} s)"
        )
        print(
            f"  inference batch size: {b['count']:,} batches, mean {b['mean']}; buckets "
            + ", ".join(f"{k}: {c}" for k, c in b["buckets"].items())
        )
        c, q, sb = r["inference_compute_seconds"], r["inference_queue_wait_seconds"], r["sessionizer_batch_seconds"]
        print(
            f"  inference compute: {c['sum']:.2f} s total, mean {c['mean']} s/batch; queue wait mean "
            f"{q['mean']} s/request"
        )
        print(
            f"  sessionizer: {sb['count']:,} batches, {sb['sum']:.2f} s total, mean {sb['mean']} s/batch "
            f"(jump_sessionizer_batch_seconds)"
        )
    print("\ndefinitions:")
    for _k, d in res["definitions"].items():
        print(f"  {d}")
    print("  x (a), x (b): events/s divided by that of (a), (b)")
    for name, t in res.get("target", {}).items():
        print(f"target (c) >= 1.0 x (b): {name}: {t['x_b']:.2f} x -> {'met' if t['met'] else 'NOT met'}")


# --------------------------------------------------------------------------- CLI


def add_bench_stream(bsub) -> None:
    p = bsub.add_parser(
        "stream",
        help="stream events/s: bare aiokafka and Faust pass-throughs vs the pipeline, or sessionizers side by side",
        description="--workload pipeline (default): produce N synthetic clicks once, then measure side by "
        "side: (a) a bare aiokafka consume->produce pass-through, (b) a bare Faust pass-through agent "
        "(per event; b2: take_events batches), (c) the full pipeline (sessionizer + "
        "inference workers, one random-weight JUMP model per --dims value). "
        "--workload sessions: a sessionizing workload (many users, many open sessions) through this "
        "project's sessionizer, the Faust and aiokafka pass-throughs, and Quix Streams and Bytewax session "
        "windows (optional `bench` extra; skipped when absent) -- pipeline/devtools/sessions_bench.py. "
        "Uses an embedded Tansu broker unless --bootstrap / $KAFKA_BOOTSTRAP_SERVERS.",
    )
    p.add_argument(
        "--workload",
        choices=("pipeline", "sessions"),
        default="pipeline",
        help="pipeline: the stream against its ceilings; sessions: sessionizers side by side",
    )
    p.add_argument("--clicks", type=int, default=None, help="clicks (N; default 100000, sessions: 200000)")
    p.add_argument("--partitions", type=int, default=None, help="partitions of every topic (default 1, sessions: 4)")
    p.add_argument("--dims", default="16,100", help="pipeline: comma-separated JUMP dimensions, one pipeline run each")
    p.add_argument(
        "--work-dir",
        default=None,
        help="data, checkpoints, worker logs (default runs/bench-stream, sessions: runs/bench-sessions)",
    )
    p.add_argument("--json", default=None, help="write the figures as JSON here")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: embedded broker)")
    p.add_argument("--no-faust-batch", action="store_true", help="pipeline: skip the (b2) take_events pass-through")
    p.add_argument(
        "--runtimes",
        default="faust,aiokafka",
        help="pipeline: inference worker runtimes to run (c) with (JUMP_INFERENCE_RUNTIME values)",
    )
    p.add_argument(
        "--span-days", type=float, default=30.0, help="pipeline: synthetic data: event-time span (SynthConfig)"
    )
    p.add_argument(
        "--users",
        type=int,
        default=None,
        help="pipeline: synthetic data: users (default clicks // 40); more users = more concurrent sessions",
    )
    p.add_argument("--keys", type=int, default=None, help="sessions: users of the workload (default 5000)")
    p.add_argument(
        "--contenders",
        default=None,
        help="sessions: comma-separated, run in this order (default: sessionizer,faust_batch,aiokafka,quix,bytewax)",
    )
    p.add_argument("--png", default=None, help="sessions: write a bar chart of events/s and CPU per click here")
    p.add_argument(
        "--peer-python",
        default=None,
        help="sessions: interpreter with the `bench` extra for the Quix Streams / Bytewax peers "
        "(default $JUMP_BENCH_PYTHON, else .venv-bench/bin/python when present, else this one)",
    )
    p.set_defaults(func=cmd_bench_stream)


def cmd_bench_stream(a) -> int:
    if a.workload == "sessions":
        from .sessions_bench import CONTENDERS, bench_sessions

        contenders = (
            CONTENDERS if a.contenders is None else tuple(c.strip() for c in a.contenders.split(",") if c.strip())
        )
        bench_sessions(
            clicks=200_000 if a.clicks is None else a.clicks,
            keys=5_000 if a.keys is None else a.keys,
            partitions=4 if a.partitions is None else a.partitions,
            contenders=contenders,
            work_dir=a.work_dir or "runs/bench-sessions",
            json_out=a.json,
            png_out=a.png,
            bootstrap=a.bootstrap,
            peer_python_path=a.peer_python,
        )
        return 0
    only = [f"--{k.replace('_', '-')}" for k in ("keys", "contenders", "png", "peer_python") if getattr(a, k)]
    if only:
        raise ValueError(f"{', '.join(only)}: only with --workload sessions")
    dims = tuple(int(x) for x in str(a.dims).split(",") if x.strip())
    if not dims:
        raise ValueError("--dims: give at least one dimension")
    bench_stream(
        clicks=100_000 if a.clicks is None else a.clicks,
        partitions=1 if a.partitions is None else a.partitions,
        work_dir=a.work_dir or "runs/bench-stream",
        json_out=a.json,
        dims=dims,
        bootstrap=a.bootstrap,
        faust_batch=not a.no_faust_batch,
        span_days=a.span_days,
        users=a.users,
        runtimes=tuple(r for r in a.runtimes.split(",") if r),
    )
    return 0
