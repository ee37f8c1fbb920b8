"""Prometheus metrics of the stream workers (base units, `_total` counters, low-cardinality labels),
and the HTTP endpoint serving them with the health probes.

Identities checked by the tests, per process:
    sessionizer: jump_clicks_consumed_total = jump_clicks_accepted_total + sum(jump_dead_letters_total)
                 + sum(jump_duplicates_dropped_total) + jump_clicks_rekeyed_total
    trainer:     jump_trainer_records_consumed_total = jump_trainer_sessions_windowed_total
                 + sum(jump_trainer_sessions_skipped_total) + jump_dead_letters_total{reason="bad_training_log"}

Every worker also exports its process (`process_*`: resident memory, CPU seconds, start time, open
file descriptors), `python_info` and `python_gc_*`, and -- in a process that uses CUDA -- the
`jump_gpu_*` gauges, read at scrape time (`GpuCollector`).

Endpoints (one port, JUMP_METRICS_PORT): /metrics; /healthz (200 while the worker's loop made
progress within JUMP_HEALTH_STALE_S: a liveness probe); /readyz (200 once the worker is ready --
model loaded, consumer started -- and healthy: a readiness probe).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

_LEN_BUCKETS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 100, 150, 300, 1000)
_DWELL_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 2000, 3600)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# -- sessionizer ------------------------------------------------------------------------------------
clicks_consumed = Counter("jump_clicks_consumed", "Input click messages consumed (ticks excluded)", registry=REGISTRY)
clicks_accepted = Counter(
    "jump_clicks_accepted", "Clicks placed in a session (one inference request each)", registry=REGISTRY
)
dead_letters = Counter(
    "jump_dead_letters", "Input messages sent to the dead-letter topic", ["reason"], registry=REGISTRY
)
duplicates = Counter(
    "jump_duplicates_dropped",
    "Input messages dropped as duplicates: a repeated event_id in its session, or a message "
    "re-delivered after a restart whose effect is already in the state",
    ["kind"],
    registry=REGISTRY,
)
rekeyed = Counter(
    "jump_clicks_rekeyed", "Clicks whose Kafka key was not their session key, re-produced keyed", registry=REGISTRY
)
ticks = Counter("jump_ticks", "Idle-check tick records consumed", registry=REGISTRY)
open_sessions = Gauge("jump_open_sessions", "Sessions open in this worker", registry=REGISTRY)
sessions_closed = Counter(
    "jump_sessions_closed", "Sessions closed and written to the training log", ["reason"], registry=REGISTRY
)
session_length = Histogram(
    "jump_session_length_clicks", "Clicks per closed session", buckets=_LEN_BUCKETS, registry=REGISTRY
)
dwell = Histogram(
    "jump_dwell_seconds",
    "Observed (uncensored) dwell of the clicks of closed sessions (eq. 4)",
    buckets=_DWELL_BUCKETS,
    registry=REGISTRY,
)
stream_time = Gauge(
    "jump_stream_time_timestamp_seconds",
    "Largest event time accepted (Unix s; max over this worker's partitions)",
    registry=REGISTRY,
)
batch_seconds = Histogram(
    "jump_sessionizer_batch_seconds",
    "Wall time per sessionizer batch, outputs and state persisted",
    buckets=_SECONDS,
    registry=REGISTRY,
)
consumer_lag = Gauge(
    "jump_consumer_lag_messages",
    "Fetch high watermark minus next offset to process, summed over the worker's assigned partitions",
    ["worker"],
    registry=REGISTRY,
)

# -- inference --------------------------------------------------------------------------------------
predictions = Counter(
    "jump_predictions",
    "Predictions emitted, by the version of the model that made them; bounded: only the served version "
    "and the one it replaced keep a series (older versions' series are removed at a model swap)",
    ["model_version"],
    registry=REGISTRY,
)
unknown_items = Counter(
    "jump_unknown_items", "Requests whose current item is not in the model vocabulary", registry=REGISTRY
)
bad_requests = Counter(
    "jump_bad_requests", "Request records that could not be decoded (dead-lettered)", registry=REGISTRY
)
inference_failures = Counter("jump_inference_failures", "Micro-batches whose inference raised", registry=REGISTRY)
batch_size = Histogram(
    "jump_inference_batch_size", "Requests per inference micro-batch", buckets=_BATCH_BUCKETS, registry=REGISTRY
)
queue_wait = Histogram(
    "jump_inference_queue_wait_seconds",
    "Request produce time to the start of its batch",
    buckets=_SECONDS,
    registry=REGISTRY,
)
compute = Histogram("jump_inference_compute_seconds", "Model time per micro-batch", buckets=_SECONDS, registry=REGISTRY)
latency = Histogram(
    "jump_click_to_prediction_seconds",
    "Input click's Kafka timestamp to prediction emit",
    buckets=_SECONDS,
    registry=REGISTRY,
)
predicted_dwell = Histogram(
    "jump_predicted_dwell_seconds", "Predicted dwell (median) per prediction", buckets=_DWELL_BUCKETS, registry=REGISTRY
)
model_reloads = Counter(
    "jump_model_reloads", "Checkpoint reload attempts by the inference worker", ["result"], registry=REGISTRY
)
model_info = Gauge("jump_model_info", "The served model (value 1)", ["model_version", "device"], registry=REGISTRY)
model_refusals = Counter(
    "jump_model_refusals", "Checkpoints refused by the inference worker, by reason", ["reason"], registry=REGISTRY
)
model_created = Gauge(
    "jump_model_created_timestamp_seconds",
    "Creation time of the served model (Unix s; time() minus this is the model's staleness)",
    registry=REGISTRY,
)
model_loaded = Gauge(
    "jump_model_loaded_timestamp_seconds", "When the served model was loaded by this worker (Unix s)", registry=REGISTRY
)

_served_versions: list[str] = []  # the versions whose jump_predictions_total series are kept, oldest first
_served_lock = threading.Lock()


def serving(model_version: str) -> None:
    """`model_version` starts serving: its jump_predictions_total series starts at 0, and only it and
    the version it replaces keep a series (the label is bounded, whatever the number of swaps)."""
    with _served_lock:
        if model_version in _served_versions:
            _served_versions.remove(model_version)
        _served_versions.append(model_version)
        predictions.labels(model_version)
        while len(_served_versions) > 2:
            with contextlib.suppress(KeyError):
                predictions.remove(_served_versions.pop(0))


def count_predictions(model_version: str, n: int) -> None:
    """`n` predictions made by `model_version` (a version not yet announced by `serving` is served now)."""
    if model_version not in _served_versions:
        serving(model_version)
    predictions.labels(model_version).inc(n)


# -- trainer ----------------------------------------------------------------------------------------
_RUN_SECONDS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
trainer_consumed = Counter(
    "jump_trainer_records_consumed", "Training-log records consumed by the trainer", registry=REGISTRY
)
trainer_windowed = Counter(
    "jump_trainer_sessions_windowed", "Closed sessions added to the training window", registry=REGISTRY
)
trainer_skipped = Counter(
    "jump_trainer_sessions_skipped",
    "Training-log records not added to the window: a duplicate session id, or a session too short to have a next click",
    ["reason"],
    registry=REGISTRY,
)
trainer_window = Gauge("jump_trainer_window_sessions", "Sessions in the training window", registry=REGISTRY)
trainer_runs = Counter(
    "jump_trainer_runs", "Training runs, by result (promoted, rejected, failed)", ["result"], registry=REGISTRY
)
trainer_run_seconds = Histogram(
    "jump_trainer_run_seconds",
    "Wall time of a training run (train + evaluate + publish)",
    buckets=_RUN_SECONDS,
    registry=REGISTRY,
)
trainer_last_run = Gauge(
    "jump_trainer_last_run_timestamp_seconds", "End of the last training run (Unix s)", registry=REGISTRY
)
trainer_last_promotion = Gauge(
    "jump_trainer_last_promotion_timestamp_seconds", "Time of the last promotion (Unix s)", registry=REGISTRY
)
trainer_holdout = Gauge(
    "jump_trainer_holdout_ratio",
    "Last run's held-out ranking quality (live protocol, 0..1) of the candidate and the serving model: "
    "metric recall_at_20 or mrr_at_20",
    ["model", "metric"],
    registry=REGISTRY,
)
trainer_holdout_dwell_mae = Gauge(
    "jump_trainer_holdout_dwell_mae_seconds",
    "Last run's held-out dwell MAE (live protocol, uncensored clicks) of the candidate and the serving model",
    ["model"],
    registry=REGISTRY,
)
trainer_train_loss = Gauge("jump_trainer_train_loss_per_click", "Last run's training loss per click", registry=REGISTRY)
trainer_sessions_used = Gauge(
    "jump_trainer_sessions_used", "Last run's sessions, by split (train, holdout)", ["split"], registry=REGISTRY
)
trainer_vocabulary = Gauge(
    "jump_trainer_vocabulary_items", "Items in the last candidate's vocabulary", registry=REGISTRY
)
trainer_new_items = Counter(
    "jump_trainer_new_items", "Items added to the vocabulary by promoted models", registry=REGISTRY
)


# -- process, platform and GPU (read at scrape time) ----------------------------------------------
class GpuCollector:
    """GPU gauges of this process, read at each scrape, one series per CUDA device on which this
    process holds memory (label device="cuda:N"): memory allocated by tensors and reserved by
    torch's caching allocator (torch.cuda.memory_allocated / memory_reserved), and the device's
    utilisation (torch.cuda.utilization, 0..1) where NVML is available (the nvidia-ml-py package,
    pinned, and the NVIDIA driver's library; without them there is no utilisation series).

    Registered in every worker, it yields nothing in a process that has not initialised CUDA (a CPU
    inference worker, a CPU-only torch) and never imports torch: a process that never imported it
    (the sessionizer) is not made to. Its families are described even where no GPU is in use.
    """

    FAMILIES: tuple[tuple[str, str], ...] = (
        ("jump_gpu_memory_allocated_bytes", "GPU memory allocated by this process's tensors (memory_allocated)"),
        ("jump_gpu_memory_reserved_bytes", "GPU memory reserved by this process's caching allocator (memory_reserved)"),
        ("jump_gpu_utilization_ratio", "Fraction of the last sample period a kernel ran on the device (needs NVML)"),
    )

    def __init__(self):
        self._utilization = True  # False once NVML is found missing (not retried at every scrape)

    def _families(self) -> dict[str, GaugeMetricFamily]:
        return {name: GaugeMetricFamily(name, doc, labels=["device"]) for name, doc in self.FAMILIES}

    def describe(self):
        return list(self._families().values())

    def collect(self):
        torch = sys.modules.get("torch")
        if torch is None:
            return []
        cuda = torch.cuda
        try:
            if not cuda.is_initialized():
                return []
            devices = range(cuda.device_count())
        except Exception:
            return []
        fams = self._families()
        for i in devices:
            try:
                reserved, allocated = cuda.memory_reserved(i), cuda.memory_allocated(i)
            except Exception:
                continue
            if not reserved:
                continue  # a device this process does not use
            device = f"cuda:{i}"
            fams["jump_gpu_memory_allocated_bytes"].add_metric([device], allocated)
            fams["jump_gpu_memory_reserved_bytes"].add_metric([device], reserved)
            if self._utilization:
                try:
                    fams["jump_gpu_utilization_ratio"].add_metric([device], cuda.utilization(i) / 100.0)
                except ImportError:  # no pynvml (nvidia-ml-py)
                    self._utilization = False
                except Exception:
                    pass
        return [f for f in fams.values() if f.samples]


ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)
gpu = GpuCollector()
REGISTRY.register(gpu)

# Labelled counters appear at their first increment, which increase() cannot see: start them at 0.
for _result in ("promoted", "rejected", "failed"):
    trainer_runs.labels(_result)
for _result in ("loaded", "refused"):
    model_reloads.labels(_result)

# -- health -----------------------------------------------------------------------------------------
_health = {"beat": time.monotonic(), "ready": False, "stale_s": 120.0}


def beat() -> None:
    """Record progress of the worker's loop (liveness)."""
    _health["beat"] = time.monotonic()


def set_ready(ready: bool = True) -> None:
    _health["ready"] = bool(ready)


def health() -> tuple[bool, bool, str]:
    """(alive, ready, reason)."""
    age = time.monotonic() - _health["beat"]
    alive = age <= _health["stale_s"]
    ready = alive and _health["ready"]
    reason = ("ok" if ready else "not ready") if alive else f"no progress for {age:.0f} s"
    return alive, ready, reason


def _app():
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            alive, ready, reason = health()
            ok = alive if path == "/healthz" else ready
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [reason.encode() + b"\n"]
        return metrics_app(environ, start_response)

    return app


def serve(port: int, addr: str = "0.0.0.0", stale_s: float = 120.0) -> None:
    """Expose /metrics, /healthz and /readyz on a daemon thread; port 0 disables it."""
    _health["stale_s"] = stale_s
    beat()
    if not port:
        return
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    httpd = make_server(addr, port, _app(), Server, handler_class=QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="jump-metrics", daemon=True).start()


def record_sessionizer_batch(out) -> None:
    """Apply a SessionizerCore Output's counts to the metrics."""
    c = out.counts
    clicks_consumed.inc(c.get("consumed", 0))
    clicks_accepted.inc(c.get("accepted", 0))
    for reason, n in out.dead_reasons.items():
        dead_letters.labels(reason).inc(n)
    if c.get("duplicates"):
        duplicates.labels("event_id").inc(c["duplicates"])
    if c.get("replayed"):
        duplicates.labels("replayed").inc(c["replayed"])
    rekeyed.inc(c.get("rekeyed", 0))
    ticks.inc(c.get("ticks", 0))
    for reason, n, tau, delta in out.closed:
        sessions_closed.labels(reason).inc()
        session_length.observe(n)
        for t, d in zip(tau, delta):
            if not d:
                dwell.observe(t)
