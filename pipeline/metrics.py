"""Prometheus metrics of the stream workers (base units, `_total` counters, low-cardinality labels).

Identity checked by the tests, per sessionizer process:
    jump_clicks_consumed_total = jump_clicks_accepted_total + sum(jump_dead_letters_total)
                                 + sum(jump_duplicates_dropped_total) + jump_clicks_rekeyed_total
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

_LEN_BUCKETS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 100, 150, 300, 1000)
_DWELL_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 2000, 3600)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# -- sessionizer ------------------------------------------------------------------------------------
clicks_consumed = Counter("jump_clicks_consumed", "Input click messages consumed (ticks excluded)",
                          registry=REGISTRY)
clicks_accepted = Counter("jump_clicks_accepted", "Clicks placed in a session (one inference request each)",
                          registry=REGISTRY)
dead_letters = Counter("jump_dead_letters", "Input messages sent to the dead-letter topic", ["reason"],
                       registry=REGISTRY)
duplicates = Counter("jump_duplicates_dropped",
                     "Input messages dropped as duplicates: a repeated event_id in its session, or a message "
                     "re-delivered after a restart whose effect is already in the state", ["kind"],
                     registry=REGISTRY)
rekeyed = Counter("jump_clicks_rekeyed", "Clicks whose Kafka key was not their session key, re-produced keyed",
                  registry=REGISTRY)
ticks = Counter("jump_ticks", "Idle-check tick records consumed", registry=REGISTRY)
open_sessions = Gauge("jump_open_sessions", "Sessions open in this worker", registry=REGISTRY)
sessions_closed = Counter("jump_sessions_closed", "Sessions closed and written to the training log", ["reason"],
                          registry=REGISTRY)
session_length = Histogram("jump_session_length_clicks", "Clicks per closed session", buckets=_LEN_BUCKETS,
                           registry=REGISTRY)
dwell = Histogram("jump_dwell_seconds", "Observed (uncensored) dwell of the clicks of closed sessions (eq. 4)",
                  buckets=_DWELL_BUCKETS, registry=REGISTRY)
stream_time = Gauge("jump_stream_time_seconds", "Largest event time accepted (max over this worker's partitions)",
                    registry=REGISTRY)
batch_seconds = Histogram("jump_sessionizer_batch_seconds", "Wall time per sessionizer batch, outputs and state "
                          "persisted", buckets=_SECONDS, registry=REGISTRY)
consumer_lag = Gauge("jump_consumer_lag_messages", "Fetch high watermark minus next offset to process, summed over "
                     "the worker's assigned partitions", ["worker"], registry=REGISTRY)

# -- inference --------------------------------------------------------------------------------------
predictions = Counter("jump_predictions", "Predictions emitted", registry=REGISTRY)
unknown_items = Counter("jump_unknown_items", "Requests whose current item is not in the model vocabulary",
                        registry=REGISTRY)
bad_requests = Counter("jump_bad_requests", "Request records that could not be decoded (dead-lettered)",
                       registry=REGISTRY)
inference_failures = Counter("jump_inference_failures", "Micro-batches whose inference raised", registry=REGISTRY)
batch_size = Histogram("jump_inference_batch_size", "Requests per inference micro-batch", buckets=_BATCH_BUCKETS,
                       registry=REGISTRY)
queue_wait = Histogram("jump_inference_queue_wait_seconds", "Request produce time to the start of its batch",
                       buckets=_SECONDS, registry=REGISTRY)
compute = Histogram("jump_inference_compute_seconds", "Model time per micro-batch", buckets=_SECONDS,
                    registry=REGISTRY)
latency = Histogram("jump_click_to_prediction_seconds", "Input click's Kafka timestamp to prediction emit",
                    buckets=_SECONDS, registry=REGISTRY)
predicted_dwell = Histogram("jump_predicted_dwell_seconds", "Predicted dwell (median) per prediction",
                            buckets=_DWELL_BUCKETS, registry=REGISTRY)
model_reloads = Counter("jump_model_reloads", "Checkpoint reload attempts by the inference worker", ["result"],
                        registry=REGISTRY)
model_info = Gauge("jump_model_info", "The served model (value 1)", ["model_version", "device"], registry=REGISTRY)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose /metrics; port 0 disables it."""
    if port:
        start_http_server(port, addr=addr, registry=REGISTRY)


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
