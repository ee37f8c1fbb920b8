"""Every setting of the stream workers, read from environment variables with documented defaults.

`Settings.from_env()` is the only reader of the environment; `settings_help()` renders the table
printed by `jump sessionizer --help` / `jump inference --help` and kept in the README.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields

from jump_core.sessions import C1_DEFAULT, C2_DEFAULT, REDDIT_GAP


def _opt(env: str, default, doc: str, kind=None):
    return field(default=default, metadata={"env": env, "doc": doc, "kind": kind or type(default)})


@dataclass(frozen=True)
class Settings:
    # -- Kafka ----------------------------------------------------------------------------------
    bootstrap_servers: str = _opt(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "comma-separated host:port list of the Kafka cluster"
    )
    security_protocol: str = _opt("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: str = _opt("KAFKA_SASL_MECHANISM", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)")
    sasl_username: str = _opt("KAFKA_SASL_USERNAME", "", "SASL user")
    sasl_password: str = _opt("KAFKA_SASL_PASSWORD", "", "SASL password")
    ssl_cafile: str = _opt("KAFKA_SSL_CAFILE", "", "CA bundle for SSL/SASL_SSL")
    ssl_certfile: str = _opt("KAFKA_SSL_CERTFILE", "", "client certificate (mutual TLS)")
    ssl_keyfile: str = _opt("KAFKA_SSL_KEYFILE", "", "client key (mutual TLS)")
    fetch_max_wait_ms: int = _opt(
        "JUMP_FETCH_MAX_WAIT_MS",
        50,
        "consumer fetch long-poll limit (ms); Tansu answers a waiting fetch late, so "
        "this bounds each hop's latency there (Kafka answers as soon as data arrives)",
    )
    broker_wait_s: float = _opt(
        "JUMP_BROKER_WAIT_S",
        60.0,
        "at start, how long a worker or tool waits for a broker to answer (logging every 5 s) "
        "before it exits with status 2",
    )
    producer_acks: str = _opt(
        "JUMP_PRODUCER_ACKS",
        "all",
        "acknowledgements every worker's producer waits for: all (every in-sync replica: what "
        "at-least-once needs on a replicated cluster), 1 (the leader only) or 0 (none)",
    )
    producer_idempotence: str = _opt(
        "JUMP_PRODUCER_IDEMPOTENCE",
        "auto",
        "idempotent producers (no duplicates from a producer's own retries; needs acks=all): auto "
        "(on when the broker grants a producer id at start; the embedded Tansu broker does not, so "
        "off there), true or false",
    )
    auto_offset_reset: str = _opt(
        "JUMP_AUTO_OFFSET_RESET",
        "earliest",
        "where the sessionizer starts on a clicks partition its group has no offset for (a first "
        "deployment): earliest (the topic's whole retention is sessionized) or latest (from now: at "
        "start, such partitions are committed at their end); internal topics always start at their beginning",
    )
    output_format: str = _opt(
        "JUMP_OUTPUT_FORMAT",
        "msgpack",
        "value format of predictions, the training log and dead letters: msgpack or json "
        "(JSON Schemas in deploy/asyncapi.yaml; readers detect the format per record)",
    )
    app_id: str = _opt("JUMP_APP_ID", "jump-stream", "Faust app id: consumer-group and changelog-topic prefix")
    data_dir: str = _opt(
        "JUMP_DATA_DIR", "", "Faust data directory (default: a per-app folder in the temp dir; made with its parents)"
    )
    # -- topics ---------------------------------------------------------------------------------
    topic_clicks: str = _opt("JUMP_TOPIC_CLICKS", "clicks", "input clicks")
    topic_rekeyed: str = _opt(
        "JUMP_TOPIC_REKEYED",
        "jump-clicks-rekeyed",
        "internal: clicks whose message key was not their session key, re-keyed",
    )
    topic_ticks: str = _opt(
        "JUMP_TOPIC_TICKS",
        "jump-sessionizer-ticks",
        "internal: the sessionizer's idle-check ticks (co-partitioned with clicks; no worker writes to clicks)",
    )
    topic_requests: str = _opt("JUMP_TOPIC_REQUESTS", "jump-inference-requests", "internal: one request per click")
    topic_predictions: str = _opt("JUMP_TOPIC_PREDICTIONS", "jump-predictions", "one prediction per click")
    topic_training_log: str = _opt("JUMP_TOPIC_TRAINING_LOG", "jump-training-log", "one record per closed session")
    topic_dead_letters: str = _opt("JUMP_TOPIC_DEAD_LETTERS", "jump-dead-letters", "rejected input, with reason")
    topic_model_updates: str = _opt(
        "JUMP_TOPIC_MODEL_UPDATES",
        "jump-model-updates",
        "one record per promoted model (the trainer announces, inference reloads)",
    )
    topic_training_metrics: str = _opt(
        "JUMP_TOPIC_TRAINING_METRICS",
        "jump-training-metrics",
        "one record per training run of the trainer (promoted or not)",
    )
    partitions: int = _opt(
        "JUMP_PARTITIONS",
        4,
        "partitions of clicks, the re-key topic, requests and the session table "
        "(co-partitioned; must equal the clicks topic's count when it exists)",
    )
    output_partitions: int = _opt("JUMP_OUTPUT_PARTITIONS", 4, "partitions of predictions, training log, dead letters")
    replication_factor: int = _opt("JUMP_REPLICATION_FACTOR", 1, "replication factor of topics created at start-up")
    create_topics: bool = _opt("JUMP_CREATE_TOPICS", True, "create missing topics at start-up (idempotent)")
    # -- sessionizer ----------------------------------------------------------------------------
    session_key_field: str = _opt(
        "JUMP_SESSION_KEY_FIELD",
        "auto",
        "value field holding the session key: user, session, or auto (session when present, else user)",
    )
    session_gap_s: float = _opt("JUMP_SESSION_GAP_S", REDDIT_GAP, "event-time inactivity gap that closes a session (s)")
    grace_s: float = _opt("JUMP_GRACE_S", 60.0, "out-of-order tolerance (s of event time behind stream time)")
    idle_close_s: float = _opt(
        "JUMP_IDLE_CLOSE_S",
        -1.0,
        "wall-clock seconds without input on a partition after which its open sessions close (default: gap + grace)",
    )
    tick_interval_s: float = _opt("JUMP_TICK_INTERVAL_S", 5.0, "wall-clock period of the idle-check tick records")
    max_future_s: float = _opt("JUMP_MAX_FUTURE_S", 300.0, "clicks more than this ahead of wall-clock are rejected")
    max_session_clicks: int = _opt(
        "JUMP_MAX_SESSION_CLICKS", 1000, "hard cap on a session's clicks; further clicks are dead-lettered"
    )
    context_clicks: int = _opt("JUMP_CONTEXT_CLICKS", 50, "the model sees a session's most recent N clicks")
    c1: float = _opt("JUMP_C1", C1_DEFAULT, "censoring threshold c1 of eq. 4 (s)")
    c2: float = _opt("JUMP_C2", C2_DEFAULT, "dwell c2 of a session's last click, eq. 4 (s)")
    sessionizer_batch: int = _opt("JUMP_SESSIONIZER_BATCH", 1000, "clicks per sessionizer batch")
    sessionizer_wait_s: float = _opt("JUMP_SESSIONIZER_WAIT_S", 0.05, "max wait to fill a sessionizer batch (s)")
    # -- inference ------------------------------------------------------------------------------
    checkpoint: str = _opt("JUMP_CHECKPOINT", "runs/model.ckpt", "JUMP checkpoint served by the inference worker")
    device: str = _opt("JUMP_DEVICE", "auto", "auto (CUDA when available, else CPU), cpu, cuda, cuda:N")
    max_batch: int = _opt("JUMP_MAX_BATCH", 256, "inference micro-batch size (requests)")
    max_wait_s: float = _opt("JUMP_MAX_WAIT_S", 0.02, "max wait to fill an inference micro-batch (s)")
    top_k: int = _opt("JUMP_TOP_K", 20, "items per prediction")
    inference_runtime: str = _opt(
        "JUMP_INFERENCE_RUNTIME",
        "aiokafka",
        "aiokafka (a bare consumer-group loop: the stateless worker skips Faust's "
        "per-event stream cost) or faust (a Faust agent); same contract and guarantee",
    )
    torch_threads: int = _opt(
        "JUMP_TORCH_THREADS",
        1,
        "torch intra-op threads of the inference worker on CPU (0: torch's default); "
        "on CPU the model runs on the event-loop thread, where one thread is fastest",
    )
    reload_check_s: float = _opt(
        "JUMP_RELOAD_CHECK_S",
        10.0,
        "how often the inference worker checks JUMP_CHECKPOINT for a new file "
        "(hot reload between micro-batches; 0: never)",
    )
    cache_sessions: int = _opt(
        "JUMP_INFERENCE_CACHE_SESSIONS",
        20000,
        "sessions whose recurrent state the inference worker keeps (LRU; 0: none, "
        "every click re-reads its whole context)",
    )
    model_dir: str = _opt(
        "JUMP_MODEL_DIR",
        "runs/models",
        "versioned checkpoints published by the trainer (a volume shared with the inference "
        "workers); inference serves its current.json when present, else JUMP_CHECKPOINT",
    )
    # -- trainer --------------------------------------------------------------------------------
    trainer_window_sessions: int = _opt(
        "JUMP_TRAINER_WINDOW_SESSIONS", 50_000, "training window: the most recent N closed sessions of the training log"
    )
    trainer_every_sessions: int = _opt(
        "JUMP_TRAINER_EVERY_SESSIONS", 5_000, "train when this many new sessions entered the window ..."
    )
    trainer_every_s: float = _opt(
        "JUMP_TRAINER_EVERY_S", 3600.0, "... or this many seconds passed since the last run (with >= 1 new session)"
    )
    trainer_min_sessions: int = _opt("JUMP_TRAINER_MIN_SESSIONS", 500, "no training below this window size")
    trainer_mode: str = _opt(
        "JUMP_TRAINER_MODE",
        "finetune",
        "finetune (start from the serving model, new items appended to its vocabulary) "
        "or retrain (from scratch, vocabulary rebuilt from the window)",
    )
    trainer_holdout_fraction: float = _opt(
        "JUMP_TRAINER_HOLDOUT_FRACTION", 0.1, "the most recent fraction of the window held out to compare models"
    )
    trainer_margin: float = _opt(
        "JUMP_TRAINER_MARGIN", 0.005, "promote when candidate Recall@20 (live) >= serving Recall@20 - margin"
    )
    trainer_epochs: int = _opt("JUMP_TRAINER_EPOCHS", 3, "epochs per training run (early stopping on validation)")
    trainer_lr: float = _opt("JUMP_TRAINER_LR", 0.001, "Adam learning rate of training runs")
    trainer_time_budget_s: float = _opt("JUMP_TRAINER_TIME_BUDGET_S", 900.0, "wall-time cap of one training run (s)")
    trainer_min_item_count: int = _opt(
        "JUMP_TRAINER_MIN_ITEM_COUNT", 1, "a new item enters the vocabulary once seen this often in the window"
    )
    trainer_dim: int = _opt("JUMP_TRAINER_DIM", 100, "d of a model trained from scratch (retrain, or no model yet)")
    trainer_keep: int = _opt("JUMP_TRAINER_KEEP", 10, "checkpoints kept in JUMP_MODEL_DIR (older ones deleted)")
    # -- operations -----------------------------------------------------------------------------
    metrics_port: int = _opt("JUMP_METRICS_PORT", 9464, "Prometheus /metrics port (0: none)")
    metrics_addr: str = _opt("JUMP_METRICS_ADDR", "0.0.0.0", "address the metrics endpoint binds")
    log_level: str = _opt("JUMP_LOG_LEVEL", "info", "worker log level")
    log_format: str = _opt(
        "JUMP_LOG_FORMAT",
        "text",
        "worker log format: text, or json (one JSON object per line: time, worker, level, logger, message, exc_info)",
    )
    health_stale_s: float = _opt(
        "JUMP_HEALTH_STALE_S", 120.0, "/healthz fails when the worker's loop made no progress for this long (s)"
    )

    @property
    def idle_close(self) -> float:
        return self.session_gap_s + self.grace_s if self.idle_close_s < 0 else self.idle_close_s

    @property
    def bootstrap_hosts(self) -> list[str]:
        return [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]

    @property
    def key_fields(self) -> tuple[str, ...]:
        return ("session", "user") if self.session_key_field == "auto" else (self.session_key_field,)

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> Settings:
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(f.metadata["env"], raw, f.metadata["kind"])
        values.update(overrides)
        s = cls(**values)
        s.validate()
        return s

    def validate(self) -> None:
        def need(ok: bool, env: str, what: str):
            if not ok:
                raise ValueError(f"{env}: {what}")

        need(self.partitions >= 1, "JUMP_PARTITIONS", "must be >= 1")
        need(1 <= self.fetch_max_wait_ms <= 30_000, "JUMP_FETCH_MAX_WAIT_MS", "must be 1..30000")
        need(self.output_partitions >= 1, "JUMP_OUTPUT_PARTITIONS", "must be >= 1")
        need(self.replication_factor >= 1, "JUMP_REPLICATION_FACTOR", "must be >= 1")
        need(self.session_gap_s > 0 and math.isfinite(self.session_gap_s), "JUMP_SESSION_GAP_S", "must be > 0")
        need(self.grace_s >= 0, "JUMP_GRACE_S", "must be >= 0")
        need(self.tick_interval_s > 0, "JUMP_TICK_INTERVAL_S", "must be > 0")
        need(math.isfinite(self.idle_close_s), "JUMP_IDLE_CLOSE_S", "must be a number (negative: gap + grace)")
        need(self.max_future_s >= 0, "JUMP_MAX_FUTURE_S", "must be >= 0")
        need(self.max_session_clicks >= 1, "JUMP_MAX_SESSION_CLICKS", "must be >= 1")
        need(self.context_clicks >= 1, "JUMP_CONTEXT_CLICKS", "must be >= 1")
        need(self.c1 > 0, "JUMP_C1", "must be > 0")
        need(self.c2 > 0, "JUMP_C2", "must be > 0")
        need(self.max_batch >= 1, "JUMP_MAX_BATCH", "must be >= 1")
        need(self.sessionizer_batch >= 1, "JUMP_SESSIONIZER_BATCH", "must be >= 1")
        need(self.max_wait_s >= 0, "JUMP_MAX_WAIT_S", "must be >= 0")
        need(self.sessionizer_wait_s >= 0, "JUMP_SESSIONIZER_WAIT_S", "must be >= 0")
        need(self.top_k >= 1, "JUMP_TOP_K", "must be >= 1")
        acks = self.producer_acks
        need(acks in ("all", "1", "0"), "JUMP_PRODUCER_ACKS", f"must be all, 1 or 0, not {acks!r}")
        need(
            self.producer_idempotence in ("auto", "true", "false"),
            "JUMP_PRODUCER_IDEMPOTENCE",
            f"must be auto, true or false, not {self.producer_idempotence!r}",
        )
        need(
            self.producer_idempotence != "true" or self.producer_acks == "all",
            "JUMP_PRODUCER_IDEMPOTENCE",
            "true needs JUMP_PRODUCER_ACKS=all",
        )
        need(
            self.auto_offset_reset in ("earliest", "latest"),
            "JUMP_AUTO_OFFSET_RESET",
            f"must be earliest or latest, not {self.auto_offset_reset!r}",
        )
        need(
            self.output_format in ("msgpack", "json"),
            "JUMP_OUTPUT_FORMAT",
            f"must be msgpack or json, not {self.output_format!r}",
        )
        need(self.inference_runtime in ("faust", "aiokafka"), "JUMP_INFERENCE_RUNTIME", "must be faust or aiokafka")
        need(self.torch_threads >= 0, "JUMP_TORCH_THREADS", "must be >= 0")
        need(self.reload_check_s >= 0, "JUMP_RELOAD_CHECK_S", "must be >= 0")
        need(self.cache_sessions >= 0, "JUMP_INFERENCE_CACHE_SESSIONS", "must be >= 0")
        need(
            self.session_key_field in ("auto", "user", "session") or bool(self.session_key_field),
            "JUMP_SESSION_KEY_FIELD",
            "must name a field",
        )
        need(
            self.security_protocol in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
            "KAFKA_SECURITY_PROTOCOL",
            "must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
        )
        need(
            self.sasl_mechanism in ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
            "KAFKA_SASL_MECHANISM",
            "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
        )
        need(self.trainer_window_sessions >= 2, "JUMP_TRAINER_WINDOW_SESSIONS", "must be >= 2")
        need(self.trainer_every_sessions >= 1, "JUMP_TRAINER_EVERY_SESSIONS", "must be >= 1")
        need(self.trainer_every_s > 0, "JUMP_TRAINER_EVERY_S", "must be > 0")
        need(
            2 <= self.trainer_min_sessions <= self.trainer_window_sessions,
            "JUMP_TRAINER_MIN_SESSIONS",
            "must be >= 2 and <= JUMP_TRAINER_WINDOW_SESSIONS",
        )
        need(self.trainer_mode in ("finetune", "retrain"), "JUMP_TRAINER_MODE", "must be finetune or retrain")
        need(0 < self.trainer_holdout_fraction < 1, "JUMP_TRAINER_HOLDOUT_FRACTION", "must be in (0, 1)")
        need(0 <= self.trainer_margin < 1, "JUMP_TRAINER_MARGIN", "must be in [0, 1)")
        need(self.trainer_epochs >= 1, "JUMP_TRAINER_EPOCHS", "must be >= 1")
        need(self.trainer_lr > 0, "JUMP_TRAINER_LR", "must be > 0")
        need(self.trainer_time_budget_s > 0, "JUMP_TRAINER_TIME_BUDGET_S", "must be > 0")
        need(self.trainer_min_item_count >= 1, "JUMP_TRAINER_MIN_ITEM_COUNT", "must be >= 1")
        need(self.trainer_dim >= 2, "JUMP_TRAINER_DIM", "must be >= 2")
        need(self.trainer_keep >= 2, "JUMP_TRAINER_KEEP", "must be >= 2 (the serving model and its predecessor)")
        need(self.health_stale_s > 0, "JUMP_HEALTH_STALE_S", "must be > 0")
        need(self.broker_wait_s > 0, "JUMP_BROKER_WAIT_S", "must be > 0")
        need(
            self.device == "auto" or self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device) is not None,
            "JUMP_DEVICE",
            f"must be auto, cpu, cuda or cuda:N, not {self.device!r}",
        )
        need(
            self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"),
            "JUMP_LOG_LEVEL",
            f"must be debug, info, warning, error or critical, not {self.log_level!r}",
        )
        need(self.log_format in ("text", "json"), "JUMP_LOG_FORMAT", f"must be text or json, not {self.log_format!r}")
        need(bool(self.bootstrap_hosts), "KAFKA_BOOTSTRAP_SERVERS", "must list at least one host:port")

    @property
    def acks(self) -> int | str:
        """JUMP_PRODUCER_ACKS as the Kafka clients take it."""
        return "all" if self.producer_acks == "all" else int(self.producer_acks)

    # -- Kafka client settings (security passes through to every client) -----------------------
    def kafka_python_kwargs(self) -> dict:
        """kafka-python keyword arguments (bootstrap + security)."""
        kw = {"bootstrap_servers": self.bootstrap_hosts, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            kw.update(
                sasl_mechanism=self.sasl_mechanism or "PLAIN",
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.security_protocol.endswith("SSL"):
            kw.update(
                {
                    k: v
                    for k, v in (
                        ("ssl_cafile", self.ssl_cafile),
                        ("ssl_certfile", self.ssl_certfile),
                        ("ssl_keyfile", self.ssl_keyfile),
                    )
                    if v
                }
            )
        return kw

    def ssl_context(self):
        """The TLS context of SSL / SASL_SSL, or None."""
        if not self.security_protocol.endswith("SSL"):
            return None
        import ssl

        ctx = ssl.create_default_context(cafile=self.ssl_cafile or None)
        if self.ssl_certfile:
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile or None)
        return ctx

    def aiokafka_kwargs(self) -> dict:
        """aiokafka keyword arguments (bootstrap + security)."""
        kw = {"bootstrap_servers": self.bootstrap_hosts, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            kw.update(
                sasl_mechanism=self.sasl_mechanism or "PLAIN",
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.security_protocol.endswith("SSL"):
            kw["ssl_context"] = self.ssl_context()
        return kw

    def faust_broker_credentials(self):
        """A Faust credentials object, or None for PLAINTEXT."""
        import faust

        ssl_context = self.ssl_context()
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism.startswith("SCRAM"):
                return faust.SASLCredentials(
                    username=self.sasl_username,
                    password=self.sasl_password,
                    mechanism=self.sasl_mechanism,
                    ssl_context=ssl_context,
                )
            return faust.SASLCredentials(
                username=self.sasl_username, password=self.sasl_password, ssl_context=ssl_context
            )
        if ssl_context is not None:
            return faust.SSLCredentials(ssl_context)
        return None


def _parse(env: str, raw: str, kind):
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return kind(raw)
    except ValueError:
        raise ValueError(f"{env}={raw!r}: expected {kind.__name__}") from None


def settings_help() -> str:
    """The settings as a plain-text table: variable, default, meaning."""
    rows = []
    for f in fields(Settings):
        default = f.default
        rows.append((f.metadata["env"], "" if default == "" else str(default), f.metadata["doc"]))
    w = max(len(r[0]) for r in rows)
    d = max(len(r[1]) for r in rows)
    return "\n".join(f"  {e:<{w}}  {v:<{d}}  {doc}" for e, v, doc in rows)


def settings_markdown() -> str:
    """The same table in Markdown (the README's configuration section)."""
    out = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        default = "" if f.default == "" else f"`{f.default}`"
        out.append(f"| `{f.metadata['env']}` | {default} | {f.metadata['doc']} |")
    return "\n".join(out)


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables reproducing `settings` (to launch a worker process with them)."""
    out = {}
    for f in fields(Settings):
        v = getattr(settings, f.name)
        out[f.metadata["env"]] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out
