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

Latency at a given load (`rate`, `--rate`): unpaced, (c)'s latency is that of a drained backlog
(mostly queueing). `--rate R` paces the replay of (c)'s measured clicks at R clicks/s by wall
clock (10 ms ticks, time order kept), so its latency is that of a stream arriving at R/s;
`--rate half` runs (c) unpaced first -- its events/s is the maximum sustainable rate -- then again
paced at half of it (the `_paced` variant), reporting both. Latency is broken down per hop from
the Kafka CreateTime of the click and of the sessionizer's request record (see DEFINITIONS);
the latency target (issue 13) is p99 end to end <= JUMP_MAX_WAIT_S + 100 ms at such a load.
`--set JUMP_X=V` overrides a setting of (c)'s workers (to try e.g. JUMP_FETCH_MAX_WAIT_MS).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
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
    "(broker, workers, this process); for (c) also machine = non-idle CPU seconds of the whole machine "
    "(all cores, /proc/stat) in that interval (cpu_window_s long): machine minus the rest is other work",
    "rate": "paced (c) (--rate R; '_paced' variants): the i-th measured click is due at t0 + i / R; "
    "every 10 ms tick of wall clock (or the next due time, when later) sends the clicks due by then, in "
    "time order, as one record batch per partition (aiokafka send_batch, acks=1; partition = murmur2 of the "
    "key, as the unpaced kafka-python replay; CreateTime = the tick), all acknowledged at the end; achieved = "
    "(N - 1) / (last send - first send); behind = the most a click was sent after its due time. --rate "
    "half: (c) unpaced first (its events/s = the maximum sustainable rate of this run), then (c) again, "
    "fresh workers and topics, paced at half of it",
    "latency": "latency per measured prediction, p50/p90/p99 (sorted value at index round(q (n - 1))) and "
    "max (unpaced: a drained backlog, mostly queueing; paced: latency at that load). end to end = "
    "emit_ts - ingest_ts (the click's Kafka CreateTime, set by the replay producer as it sends the click). "
    "sessionizer hop = the request record's CreateTime (set by the sessionizer's producer as it appends "
    "the request, after the batch is processed, before delivery) - the click's CreateTime: the click's "
    "delivery + the sessionizer's fetch (long poll JUMP_FETCH_MAX_WAIT_MS) + take_events buffering "
    "(JUMP_SESSIONIZER_WAIT_S) + the previous batch still in progress + processing. inference hop = "
    "emit_ts - the request's CreateTime: the sessionizer's delivery of the request + the inference "
    "worker's fetch + queueing behind the micro-batch in progress + its own micro-batch's compute (at "
    "most JUMP_MAX_BATCH requests; the Faust runtime also waits up to JUMP_MAX_WAIT_S to fill one). "
    "Requests read from the requests topic, matched by (session_id, position), first copy. by_quarter: "
    "the same per quarter of the replay's span of click CreateTimes (a drift over the run shows there). "
    "The sessionizer's output delivery and changelog write after the request's CreateTime delay the "
    "next batch, not this one",
    "histograms": "worker histograms (Prometheus, deltas over the measured interval; *_le = upper bound of "
    "the bucket holding that quantile): jump_inference_queue_wait_seconds = request CreateTime -> start of "
    "its micro-batch (per request), jump_inference_compute_seconds = model time per micro-batch, "
    "jump_sessionizer_batch_seconds = one sessionizer batch: processing + output delivery + changelog write",
    "latency_target": "latency target (issue 13), paced variants: p99 end to end <= JUMP_MAX_WAIT_S "
    "(inference micro-batch wait) + 100 ms",
    "loadavg": "loadavg: os.getloadavg() (1, 5, 15 min) of the machine at the end of the measured interval",
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


def _machine_busy_s() -> float | None:
    """Non-idle CPU seconds of the whole machine since boot, all cores (/proc/stat), None if unknown."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait; guest is in user


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


def _produce(settings, topic: str, msgs: list[tuple], rate: float | None = None) -> dict:
    """Send the messages in order with kafka-python (acks=1, no idempotence: Tansu lacks it) and flush.
    Each message is (key, value), or (key, value, timestamp_ms) to set its Kafka timestamp.
    `rate` (messages/s): paced by wall clock instead (`_produce_paced`)."""
    if rate is not None:
        return asyncio.run(_produce_paced(settings, topic, msgs, rate))
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


async def _produce_paced(settings, topic: str, msgs: list[tuple], rate: float, tick_s: float = 0.01) -> dict:
    """Send (key, value) messages paced at `rate`/s by wall clock: message i is due at start + i / rate;
    every `tick_s` (or at the next due time, when later) the messages due by then are appended to one
    record batch per partition (the default partitioner's murmur2 of the key, as kafka-python and the
    Java client pick it; CreateTime = the moment of appending) and sent (aiokafka send_batch, acks=1);
    a partition's batches keep their order. Record batches, not one send() per message: a per-message
    client cost ~0.35 ms of CPU per click paced (kafka-python), a large share of 2 cores at 1k/s."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    producer = AIOKafkaProducer(
        **settings.aiokafka_kwargs(),
        client_id="jump-bench-producer",
        acks=1,
        enable_idempotence=False,
        linger_ms=0,
        max_batch_size=1 << 18,
    )
    await producer.start()
    n, behind, futures = len(msgs), 0.0, []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a full collection of this process (torch, the clicks) stalls the pacer ~0.1-0.2 s
    try:
        parts = sorted(await producer.partitions_for(topic))
        partitioner = DefaultPartitioner()
        part = [partitioner(m[0], parts, parts) for m in msgs]
        t0 = time.time()
        start, i = time.perf_counter(), 0
        while i < n:
            now = time.perf_counter()
            due = min(n, int((now - start) * rate) + 1)
            if due > i:
                behind = max(behind, now - (start + i / rate))
                batches: dict[int, list] = {}
                for j in range(i, due):
                    p, m = part[j], msgs[j]
                    chain = batches.setdefault(p, [producer.create_batch()])
                    if chain[-1].append(timestamp=None, key=m[0], value=m[1]) is None:  # full: the next one
                        chain.append(producer.create_batch())
                        chain[-1].append(timestamp=None, key=m[0], value=m[1])
                for p, chain in batches.items():
                    for b in chain:
                        futures.append(await producer.send_batch(b, topic, partition=p))
                i = due
            if i < n:
                await asyncio.sleep(max(0.0, max(now + tick_s, start + i / rate) - time.perf_counter()))
        t_sent = time.time()
        await asyncio.gather(*futures)
        t1 = time.time()
    finally:
        if gc_was_enabled:
            gc.enable()
        await producer.stop()
    return {
        "t_first": t0,
        "t_done": t1,
        "seconds": round(t1 - t0, 3),
        "events_per_s": round(n / max(t1 - t0, 1e-9), 1),
        "rate_target": round(rate, 1),
        "achieved_rate": round((n - 1) / (t_sent - t0), 1) if n > 1 and t_sent > t0 else None,
        "max_behind_s": round(behind, 4),
    }


def bench_settings(bootstrap: str, partitions: int, app_id: str, data: Path):
    """The benchmarks' base Settings ($KAFKA_* client options kept, data under `data`), once the
    broker answers."""
    from ..config import Settings
    from ..runtime.kafka import wait_for_broker

    kafka_env = {k: v for k, v in os.environ.items() if k.startswith("KAFKA_")}
    base = Settings.from_env(
        env=kafka_env,
        bootstrap_servers=bootstrap,
        partitions=partitions,
        output_partitions=partitions,
        app_id=app_id,
        data_dir=str(data / "{conf.id}"),
        log_level="warning",
    )
    data.mkdir(parents=True, exist_ok=True)
    wait_for_broker(base, 30)
    return base


def reader(settings, topic: str, deadline: float, fetch_max_wait_ms: int = 250):
    """A kafka-python consumer (no group) assigned every partition of `topic`, at the beginning;
    waits for the topic until `deadline` (time.monotonic()). Returns (consumer, partitions)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **settings.kafka_python_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    try:
        while not (parts := consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} does not exist")
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
    except BaseException:
        consumer.close()
        raise
    return consumer, tps


def _consume(
    settings, topic: str, *, want: int, timeout_s: float, key_of=None, progress: str | None = None, stop=None
) -> list:
    """kafka-python ConsumerRecords of `topic` (all partitions, from the beginning) until `want` distinct
    records (by key_of(record), default: every record counts), or timeout, or stop() is truthy."""
    deadline = time.monotonic() + timeout_s
    consumer, _tps = reader(settings, topic, deadline, fetch_max_wait_ms=250)
    try:
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
    labels = [*list(names), "broker", "bench", "machine"]
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
    out = {
        "buckets": {k: v for k, v in buckets.items() if v},
        "count": int(count),
        "sum": round(total, 4),
        "mean": round(total / count, 4) if count else None,
    }
    for q in (50, 90, 99):  # the upper bound of the bucket holding the quantile
        le = next((le for le, c in zip(les, cum) if count and c >= q / 100.0 * count), None)
        out[f"p{q}_le"] = None if le is None or le == float("inf") else le
    return out


def _dist(values: list[float]) -> dict:
    """count, mean, p50, p90, p99 (see _pct) and max of `values` (seconds, rounded to 0.1 ms)."""
    if not values:
        return {"count": 0}
    out = {"count": len(values), "mean": round(sum(values) / len(values), 4)}
    for q in (50, 90, 99):
        out[f"p{q}"] = round(_pct(values, q), 4)
    out["max"] = round(max(values), 4)
    return out


def _worker_overrides(env: dict[str, str]) -> dict:
    """Settings field -> value for `{"JUMP_X": "value"}` (parsed and validated as Settings.from_env does)."""
    from ..config import Settings

    by_env = {f.metadata["env"]: f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(k for k in env if k not in by_env)
    if unknown:
        raise ValueError(f"--set: unknown setting(s) {', '.join(unknown)} (see `jump sessionizer --help`)")
    parsed = Settings.from_env(env=dict(env))
    return {by_env[k]: getattr(parsed, by_env[k]) for k in env}


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
    rate: float | None = None,
    overrides: dict | None = None,
) -> dict:
    """(c): fresh workers and topics, a warm-up, then the measured clicks replayed as fast as possible
    or, with `rate`, paced at `rate` clicks/s; `overrides` (Settings field -> value) go to both workers."""
    from .. import codec
    from ..runtime.kafka import ensure_topics, topic_specs
    from . import procs
    from .broker import free_port

    ckpt = work / f"bench_d{dim}.ckpt"
    _checkpoint(ckpt, items, dim)
    label = f"d{dim}" + ("" if runtime == "faust" else f"-{runtime}") + ("" if rate is None else "-paced")
    tag = f"{token}-{label}"
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
    if overrides:
        s = dataclasses.replace(s, **overrides)
    (work / "data" / tag).mkdir(parents=True, exist_ok=True)
    ensure_topics(s, topic_specs(s))
    sess_port, inf_port = free_port(), free_port()
    while inf_port == sess_port:
        inf_port = free_port()
    s_sess, s_inf = dataclasses.replace(s, metrics_port=sess_port), dataclasses.replace(s, metrics_port=inf_port)
    log_sess, log_inf = logs / f"sessionizer-{label}.log", logs / f"inference-{label}.log"
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
        cpu0 = (_cpu_s(sess.pid), _cpu_s(inf.pid), _cpu_s(broker_pid), _self_cpu(), _machine_busy_s())
        t_cpu0 = time.time()
        if rate is not None:
            _log(f"(c d={dim}) replay paced at {rate:,.0f} clicks/s (~{n / rate:.0f} s)")
        prod = _produce(s, s.topic_clicks, msgs, rate=rate)
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
        cpu1 = (_cpu_s(sess.pid), _cpu_s(inf.pid), _cpu_s(broker_pid), _self_cpu(), _machine_busy_s())
        t_cpu1 = time.time()
        loadavg = [round(x, 2) for x in os.getloadavg()]
        m_sess1, m_inf1 = procs.scrape(sess_port), procs.scrape(inf_port)
    finally:
        procs.stop(sess)
        procs.stop(inf)

    def key_of(r):  # a prediction's identity (the jump-id header; its key is the session key)
        if r.key is None or r.key.startswith(b"warmup-"):
            return None
        return dict(r.headers or ()).get(codec.ID_HEADER)

    recs = _consume(s, s.topic_predictions, want=n, timeout_s=60, key_of=key_of)
    preds = [codec.decode("prediction", r.value) for r in recs]
    created: dict[tuple, float] = {}  # (session_id, position) -> the request's Kafka CreateTime (s)

    def request_key(r):
        if r.key is None or r.key.startswith(b"warmup-"):
            return None
        q = codec.decode("request", r.value)
        k = (q["session_id"], q["position"])
        created.setdefault(k, r.timestamp / 1000.0)  # the first copy
        return k

    _consume(s, s.topic_requests, want=n, timeout_s=60, key_of=request_key)
    emit = [p["emit_ts"] for p in preds]
    lat = [p["emit_ts"] - p["ingest_ts"] for p in preds]
    hop_sess, hop_inf = [], []
    quarters = [([], [], []) for _ in range(4)]  # by the click's ingest time: e2e, sessionizer, inference
    t_in = [p["ingest_ts"] for p in preds]
    t_lo, t_span = (min(t_in), max(t_in) - min(t_in)) if t_in else (0.0, 0.0)
    for p in preds:
        t_req = created.get((p["session_id"], p["position"]))
        e2e, qs = p["emit_ts"] - p["ingest_ts"], quarters[min(3, int(4 * (p["ingest_ts"] - t_lo) / (t_span or 1)))]
        qs[0].append(e2e)
        if t_req is not None:
            hop_sess.append(t_req - p["ingest_ts"])
            hop_inf.append(p["emit_ts"] - t_req)
            qs[1].append(hop_sess[-1])
            qs[2].append(hop_inf[-1])
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
        "rate_target": None if rate is None else round(rate, 1),
        "latency_p50_s": round(_pct(lat, 50), 4),
        "latency_p90_s": round(_pct(lat, 90), 4),
        "latency_p99_s": round(_pct(lat, 99), 4),
        "latency_max_s": round(max(lat), 4) if lat else None,
        "latency": {
            "end_to_end": _dist(lat),
            "sessionizer_hop": _dist(hop_sess),
            "inference_hop": _dist(hop_inf),
            "requests_matched": len(hop_sess),
            "by_quarter": [
                {
                    "clicks": len(e),
                    "end_to_end_p50": round(_pct(e, 50), 4) if e else None,
                    "end_to_end_p99": round(_pct(e, 99), 4) if e else None,
                    "sessionizer_hop_p99": round(_pct(hs, 99), 4) if hs else None,
                    "inference_hop_p99": round(_pct(hi, 99), 4) if hi else None,
                }
                for e, hs, hi in quarters
            ],
        },
        "worker_settings": {
            "fetch_max_wait_ms": s.fetch_max_wait_ms,
            "sessionizer_batch": s.sessionizer_batch,
            "sessionizer_wait_s": s.sessionizer_wait_s,
            "max_batch": s.max_batch,
            "max_wait_s": s.max_wait_s,
            **(overrides or {}),
        },
        "loadavg": loadavg,
        "inference_batch_size": batch,
        "inference_compute_seconds": compute,
        "inference_queue_wait_seconds": qwait,
        "sessionizer_batch_seconds": sbatch,
        "sessionizer_batch_seconds_mean": sbatch["mean"],
        "cpu_s": _cpu_delta(cpu0, cpu1, "sessionizer", "inference"),
        "cpu_window_s": round(t_cpu1 - t_cpu0, 3),
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
    rate: float | str | None = None,
    worker_env: dict[str, str] | None = None,
) -> dict:
    """Run the benchmark once; returns (and optionally writes as JSON) the figures.

    `span_days` / `users` go to jump_core.data.synth.SynthConfig (defaults: its own, 30 days and
    clicks // 40 users). More users over a short span means more concurrent sessions, hence fewer
    clicks of one session in one inference micro-batch.

    `rate`: None (default) replays (c)'s clicks as fast as possible; a number R paces that replay at
    R clicks/s (variants `c_..._paced` only); "half" runs (c) unpaced, then paced at half of its
    events/s (both variants). `worker_env` ({"JUMP_X": "value"}) overrides settings of (c)'s workers.
    """
    from ..runtime.kafka import ensure_topics
    from .broker import EmbeddedBroker

    if clicks < 1 or partitions < 1:
        raise ValueError("clicks and partitions must be >= 1")
    if rate is not None and rate != "half":
        rate = float(rate)
        if not rate > 0 or rate == float("inf"):
            raise ValueError("rate must be a positive number of clicks/s, 'half' or None")
    overrides = _worker_overrides(worker_env or {})
    dims = tuple(int(d) for d in dims)
    work = Path(work_dir).resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    t_run = time.time()
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    broker = None
    if bootstrap is None:
        broker = EmbeddedBroker(log_path=str(logs / "tansu.log"))
        broker.start()
        bootstrap = broker.bootstrap
        _log(f"embedded Tansu broker at {bootstrap} (pid {broker.pid})")
    broker_pid = broker.pid if broker is not None else None
    try:
        base = bench_settings(bootstrap, partitions, f"jump-bench-{token}", work / "data" / token)
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
            "rate": rate,
            "worker_env": dict(worker_env or {}),
            "loadavg_start": loadavg_start,
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

        def pipeline(dim, runtime, paced_at=None):
            r = _pipeline(
                base,
                dim,
                n,
                msgs,
                warm,
                items,
                partitions,
                work,
                logs,
                token,
                broker_pid,
                timeout_s,
                runtime,
                rate=paced_at,
                overrides=overrides,
            )
            r["inference_runtime"] = runtime
            e2e = r["latency"]["end_to_end"]
            _log(
                f"(c d={dim}, {runtime}{'' if paced_at is None else f' @ {paced_at:,.0f}/s'}) "
                f"{r['events_per_s']:,.0f} events/s, {r['predictions']:,}/{n:,} predictions, latency "
                f"p50 {e2e.get('p50', float('nan')) * 1000:.0f} ms, p99 {e2e.get('p99', float('nan')) * 1000:.0f} ms"
            )
            return r

        for dim in dims:
            for runtime in runtimes:
                name = f"c_pipeline_d{dim}" + ("" if runtime == "faust" else f"_{runtime}")
                if rate is None or rate == "half":
                    _log(f"(c) pipeline, JUMP d={dim}, inference runtime {runtime}")
                    v[name] = pipeline(dim, runtime)
                if rate is None:
                    continue
                paced_at = rate if rate != "half" else v[name]["events_per_s"] / 2.0
                if not paced_at > 0:
                    _log(f"(c d={dim}, {runtime}) no events/s to halve: paced run skipped")
                    continue
                _log(f"(c) pipeline, JUMP d={dim}, inference runtime {runtime}, paced at {paced_at:,.0f} clicks/s")
                v[name + "_paced"] = r = pipeline(dim, runtime, paced_at)
                if rate == "half":
                    r["max_rate_events_per_s"] = v[name]["events_per_s"]

        a_rate, b_rate = v["a_aiokafka"]["events_per_s"], v["b_faust"]["events_per_s"]
        for r in v.values():
            r["x_a"] = round(r["events_per_s"] / a_rate, 3) if a_rate else None
            r["x_b"] = round(r["events_per_s"] / b_rate, 3) if b_rate else None
        results["target"] = {
            name: {"x_b": r["x_b"], "met": bool(r["x_b"] is not None and r["x_b"] >= 1.0)}
            for name, r in v.items()
            if name.startswith("c_") and r.get("rate_target") is None
        }
        results["latency_target"] = {}
        for name, r in v.items():
            if not name.startswith("c_") or r.get("rate_target") is None:
                continue
            limit = r["worker_settings"]["max_wait_s"] + 0.1
            p99 = r["latency"]["end_to_end"].get("p99")
            results["latency_target"][name] = {
                "rate": r["rate_target"],
                "p99_s": p99,
                "limit_s": round(limit, 4),
                "met": bool(p99 is not None and p99 <= limit),
            }
        results["wall_s"] = round(time.time() - t_run, 1)
        results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if broker is not None:
            broker.stop()
    _print(results)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(results, indent=2))
        print(f"wrote {json_out}")
    return results


def _ms(x) -> str:
    return "-" if x is None else f"{x * 1000:.0f}"


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
        f"wall {res.get('wall_s', 0):.0f} s; load average (1/5/15 min) at start "
        f"{'/'.join(f'{x:g}' for x in res.get('loadavg_start', []))}, at end "
        f"{'/'.join(f'{x:g}' for x in res.get('loadavg_end', []))}"
    )
    if syn:
        w = syn["max_session_clicks_per_256"]
        print(
            f"synthetic clicks: span {syn['span_days']:g} days, users {syn['users'] or 'clicks // 40'}, "
            f"{syn['items']:,} items; clicks of one session per 256 consecutive clicks: mean {w['mean']}, "
            f"max {w['max']}"
        )
    if res.get("worker_env"):
        print("(c) workers' settings overridden: " + ", ".join(f"{k}={x}" for k, x in res["worker_env"].items()))
    head = (
        f"{'variant':<50} {'events/s':>10} {'x (a)':>7} {'x (b)':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'out-span/s':>11}  cpu s"
    )
    print(head)
    print("-" * len(head) + "------------------------")
    for name, r in v.items():
        label = labels.get(name, f"(c) pipeline, d={r.get('dim')}, inference {r.get('inference_runtime', 'faust')}")
        if r.get("rate_target") is not None:
            label += f" @ {r['rate_target']:,.0f}/s"
        e2e = r.get("latency", {}).get("end_to_end", {})
        lat = " ".join(f"{_ms(e2e.get(q)):>7}" for q in ("p50", "p90", "p99", "max"))
        cpu = " ".join(f"{k}={x:g}" for k, x in r.get("cpu_s", {}).items())
        print(
            f"{label:<50} {r['events_per_s']:>10,.0f} {r['x_a']:>7.2f} {r['x_b']:>7.2f} {lat} "
            f"{r['out_span_events_per_s']:>11,.0f}  {cpu}"
        )
    for name, r in v.items():
        if not name.startswith("c_"):
            continue
        b, rp = r["inference_batch_size"], r["replay"]
        paced = r.get("rate_target") is not None
        print(
            f"\n({name}) predictions {r['predictions']:,}/{res['clicks']:,}; replay produced "
            f"{rp['events_per_s']:,.0f} clicks/s ({rp['seconds']:.2f} s)"
            + (
                f", paced at {rp['rate_target']:,.0f}/s: achieved {rp.get('achieved_rate') or 0:,.0f}/s, at most "
                f"{rp['max_behind_s'] * 1000:.0f} ms behind schedule"
                + (
                    f" (half of the unpaced {r['max_rate_events_per_s']:,.0f} events/s)"
                    if r.get("max_rate_events_per_s")
                    else ""
                )
                if paced
                else " (unpaced: latency of a drained backlog)"
            )
        )
        lt = r["latency"]
        print(f"  latency ms           {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'mean':>7}")
        for key, what in (
            ("end_to_end", "end to end"),
            ("sessionizer_hop", "sessionizer hop"),
            ("inference_hop", "inference hop"),
        ):
            d = lt[key]
            print(f"  {what:<20} " + " ".join(f"{_ms(d.get(q)):>7}" for q in ("p50", "p90", "p99", "max", "mean")))
        bq = lt.get("by_quarter", [])
        if bq:
            print(
                "  by quarter of the replay (click time): end to end p50 "
                + " / ".join(_ms(q["end_to_end_p50"]) for q in bq)
                + ", p99 "
                + " / ".join(_ms(q["end_to_end_p99"]) for q in bq)
                + " ms; p99 sessionizer hop "
                + " / ".join(_ms(q["sessionizer_hop_p99"]) for q in bq)
                + ", inference hop "
                + " / ".join(_ms(q["inference_hop_p99"]) for q in bq)
                + " ms"
            )
        if lt["requests_matched"] < r["predictions"]:
            print(f"  (hops: {lt['requests_matched']:,} predictions matched to their request)")
        print(
            f"  inference batch size: {b['count']:,} batches, mean {b['mean']}; buckets "
            + ", ".join(f"{k}: {c}" for k, c in b["buckets"].items())
        )
        c, q, sb = r["inference_compute_seconds"], r["inference_queue_wait_seconds"], r["sessionizer_batch_seconds"]
        print(
            f"  inference compute: {c['sum']:.2f} s total, mean {_ms(c['mean'])} ms/batch (p99 <= "
            f"{_ms(c['p99_le'])} ms); queue wait mean {_ms(q['mean'])} ms/request (p50 <= {_ms(q['p50_le'])}, "
            f"p99 <= {_ms(q['p99_le'])} ms)"
        )
        print(
            f"  sessionizer: {sb['count']:,} batches, {sb['sum']:.2f} s total, mean {_ms(sb['mean'])} ms/batch "
            f"(p99 <= {_ms(sb['p99_le'])} ms; jump_sessionizer_batch_seconds)"
        )
        ws, cs = r.get("worker_settings", {}), r.get("cpu_s", {})
        print(
            "  settings: " + ", ".join(f"{k}={x}" for k, x in ws.items()) + "; load average "
            f"{'/'.join(f'{x:g}' for x in r.get('loadavg', []))}"
        )
        if cs.get("machine") is not None and r.get("cpu_window_s"):
            ours = sum(x for k, x in cs.items() if k != "machine")
            print(
                f"  machine CPU over the {r['cpu_window_s']:.0f} s measured: {cs['machine']:.1f} s busy "
                f"({cs['machine'] / r['cpu_window_s'] / (res['cpus'] or 1) * 100:.0f} % of {res['cpus']} cores), "
                f"of which this benchmark {ours:.1f} s, other work {cs['machine'] - ours:.1f} s"
            )
    print("\ndefinitions:")
    for _k, d in res["definitions"].items():
        print(f"  {d}")
    print("  x (a), x (b): events/s divided by that of (a), (b)")
    for name, t in res.get("target", {}).items():
        print(f"target (c) >= 1.0 x (b): {name}: {t['x_b']:.2f} x -> {'met' if t['met'] else 'NOT met'}")
    for name, t in res.get("latency_target", {}).items():
        print(
            f"latency target p99 <= {t['limit_s'] * 1000:.0f} ms at {t['rate']:,.0f} clicks/s: {name}: "
            f"p99 {_ms(t['p99_s'])} ms -> {'met' if t['met'] else 'NOT met'}"
        )


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
    p.add_argument(
        "--rate",
        default=None,
        help="pipeline: pace (c)'s replay at this many clicks/s (latency at that load; default: as fast as "
        "possible), or 'half': (c) unpaced, then again paced at half of its events/s",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="JUMP_X=VALUE",
        help="pipeline: a setting of (c)'s workers as its environment variable (repeatable), e.g. "
        "--set JUMP_FETCH_MAX_WAIT_MS=10",
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


def _parse_rate(raw: str | None) -> float | str | None:
    if raw is None:
        return None
    if raw.strip().lower() == "half":
        return "half"
    try:
        rate = float(raw)
    except ValueError:
        rate = float("nan")
    if not 0 < rate < float("inf"):
        raise ValueError(f"--rate {raw!r}: give clicks/s (a positive number) or 'half'")
    return rate


def _parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set {item!r}: expected JUMP_X=VALUE")
        out[name.strip()] = value
    return out


def cmd_bench_stream(a) -> int:
    if a.workload == "sessions" and (a.rate is not None or a.set):
        raise ValueError("--rate, --set: only with --workload pipeline")
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
        rate=_parse_rate(a.rate),
        worker_env=_parse_set(a.set),
    )
    return 0
