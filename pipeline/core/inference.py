"""The inference worker without Kafka: the served model, its hot replacement, the per-batch work.

`InferenceRunner.handle(messages, send)` decodes a micro-batch of requests, runs JUMP (through
core.engine.InferenceEngine), and sends one prediction per request (bad records to dead letters).
Two runtimes drive it:
- a bare aiokafka consumer-group loop (`runtime.inference.run_direct`, `JUMP_INFERENCE_RUNTIME=aiokafka`,
  the default), which skips Faust's per-event stream machinery -- the inference worker is stateless,
  it needs no Table; `jump bench stream` measured the whole pipeline 1.7x faster with it than with
- the Faust agent (`runtime.faust_app.create_inference_app`, `JUMP_INFERENCE_RUNTIME=faust`).
Both are at-least-once: request offsets are committed only after the producer is flushed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from .. import codec, metrics
from ..codec import Msg
from ..config import Settings

log = logging.getLogger("jump.inference")


class InferenceRunner:
    """The served model and its replacement, and the per-batch work.

    Models come from JUMP_MODEL_DIR (its current.json at start-up, then each jump-model-updates
    announcement with a higher seq, and current.json re-read every JUMP_RELOAD_CHECK_S in case an
    announcement was missed), or -- without a published model -- from the JUMP_CHECKPOINT file
    (reloaded when the file changes). A new model is loaded and validated off the event loop
    (`apply_update`), staged, and swapped in by the consumer loop between two micro-batches
    (`swap`): a batch is answered entirely by one model, no request is dropped or answered twice
    by the switch, and each prediction names its model. A model that fails validation (file or
    weights checksum, vocabulary or config differing from the announcement, censoring thresholds
    other than the stream's, unreadable file, non-finite predictions) is refused and counted; the
    old model keeps serving.
    """

    def __init__(self, settings: Settings, engine=None):
        from jump_core.artifacts.model_store import ModelStore

        self.s = settings
        self.engine = engine
        self.store = ModelStore(settings.model_dir)
        self.seq = 0  # seq of the served announcement (0: the JUMP_CHECKPOINT file)
        self.refused_seq = 0  # highest seq refused (not retried)
        self.stamp = None  # (mtime, size) of the served JUMP_CHECKPOINT file
        self.staged = None  # (engine, seq, created_ts) waiting for the next batch boundary
        self.loading = 0  # seq being loaded

    def _stamp(self):
        st = os.stat(self.s.checkpoint)
        return st.st_mtime_ns, st.st_size

    def _current(self) -> dict | None:
        try:
            return self.store.current()
        except Exception as exc:  # a damaged current.json: fall back to the checkpoint file
            log.error("ignoring %s: %s", self.store.dir, exc)
            return None

    def _engine(self, path, loaded=None):
        """An engine on `path` (already `loaded` by ModelStore.verify, or loaded here), checked for the
        stream's censoring thresholds and a finite prediction."""
        from jump_core.artifacts.checkpoint import CheckpointError
        from jump_core.artifacts.model_store import smoke_test
        from jump_core.training.train import resolve_device

        from .engine import InferenceEngine

        s = self.s
        if loaded is not None:
            loaded = (loaded[0].to(resolve_device(s.device)).eval(), loaded[1])
        engine = InferenceEngine(path, s.device, s.top_k, cache_sessions=s.cache_sessions, loaded=loaded)
        cfg = engine.model.config
        if (cfg.c1, cfg.c2) != (s.c1, s.c2):
            raise CheckpointError(
                f"{path}: trained with c1={cfg.c1}, c2={cfg.c2}, the stream censors with "
                f"JUMP_C1={s.c1}, JUMP_C2={s.c2}",
                "config_mismatch",
            )
        smoke_test(engine.model)
        return engine

    def _engine_for(self, record: dict | None):
        if record is None:
            return self._engine(self.s.checkpoint)
        return self._engine(self.store.resolve(record), self.store.verify(record))

    def _serve(self, engine, seq: int, created_ts: float) -> None:
        old, self.engine, self.seq = self.engine, engine, seq
        if old is not None:
            metrics.model_info.remove(old.version, str(old.device))
        metrics.model_info.labels(engine.version, str(engine.device)).set(1)
        metrics.serving(engine.version)  # bounds jump_predictions_total{model_version}
        metrics.model_created.set(created_ts)
        metrics.model_loaded.set(time.time())

    def load(self):
        """Load the first model (blocking); returns the engine. FileNotFoundError when there is none."""
        if self.engine is None:
            import torch

            if self.s.torch_threads:
                torch.set_num_threads(self.s.torch_threads)
            record = self._current()
            if record is None and not os.path.isfile(self.s.checkpoint):
                raise FileNotFoundError(
                    f"no model yet: {self.store.dir / 'current.json'} and {self.s.checkpoint} are both missing"
                )
            if record is None:
                self.stamp = self._stamp()
            engine = self._engine_for(record)
            self._serve(
                engine,
                record["seq"] if record else 0,
                record["created_ts"] if record else os.path.getmtime(self.s.checkpoint),
            )
            log.info("serving %s (%d items) on %s", engine.version, len(engine.items), engine.device)
        return self.engine

    async def wait_for_model(self, stop: asyncio.Event | None = None, poll_s: float = 5.0):
        """Load the first model, waiting (not ready, still alive) until the trainer publishes one."""
        loop = asyncio.get_running_loop()
        waited = 0.0
        while True:
            try:
                return await loop.run_in_executor(None, self.load)
            except FileNotFoundError as exc:
                if waited % 60 == 0:
                    log.warning("%s; waiting for the trainer to publish one", exc)
            metrics.beat()
            if stop is not None and stop.is_set():
                return None
            await asyncio.sleep(poll_s)
            waited += poll_s

    def _refuse(self, what: str, exc: Exception) -> None:
        reason = getattr(exc, "reason", "load_error")
        metrics.model_reloads.labels("refused").inc()
        metrics.model_refusals.labels(reason).inc()
        log.error(
            "refused %s (%s): %s; still serving %s", what, reason, exc, self.engine.version if self.engine else None
        )

    async def apply_update(self, record: dict) -> bool:
        """Load and validate an announced model in the background and stage it; False if ignored or
        refused (an announcement at or below the served or a refused seq is ignored)."""
        seq = record.get("seq")
        if (
            not isinstance(seq, int)
            or seq <= max(self.seq, self.refused_seq, self.loading)
            or (self.staged is not None and seq <= self.staged[1])
        ):
            return False
        self.loading = seq  # the announcement watcher and the poll may both see it
        try:
            engine = await asyncio.get_running_loop().run_in_executor(None, self._engine_for, record)
        except Exception as exc:
            self.refused_seq = max(self.refused_seq, seq)
            self._refuse(f"model {record.get('version')} (seq {seq})", exc)
            return False
        finally:
            self.loading = 0
        if self.staged is None or seq > self.staged[1]:
            self.staged = (engine, seq, float(record.get("created_ts") or time.time()))
        return True

    def swap(self) -> bool:
        """Serve the staged model from the next micro-batch on (called by the consumer loop between
        batches); True if the model changed."""
        if self.staged is None:
            return False
        engine, seq, created = self.staged
        self.staged = None
        old = self.engine
        self._serve(engine, seq, created)
        metrics.model_reloads.labels("loaded").inc()
        log.info("now serving %s (seq %d; was %s)", engine.version, seq, old.version if old else None)
        return True

    async def maybe_reload(self) -> None:
        """The periodic check: a newer current.json in JUMP_MODEL_DIR (an announcement may have been
        missed), else a changed JUMP_CHECKPOINT file while no published model is served."""
        if self.engine is None:
            return
        record = self._current()
        if record is not None:
            await self.apply_update(record)
            return
        if self.seq:
            return
        try:
            stamp = self._stamp()
        except OSError:
            return
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            engine = await asyncio.get_running_loop().run_in_executor(None, self._engine_for, None)
        except Exception as exc:
            self._refuse(f"checkpoint {self.s.checkpoint}", exc)
            return
        self.staged = (engine, 0, os.path.getmtime(self.s.checkpoint))

    async def _dead(self, send, m: Msg, reason: str, detail: str) -> None:
        headers, value = codec.dead_letter(
            reason, detail, m.topic, m.partition, m.offset, m.key, m.value, time.time(), self.s.output_format
        )
        await send(self.s.topic_dead_letters, m.key, value, headers)

    async def _predict(self, engine, requests):
        if engine.device.type == "cpu":
            # On CPU the model runs inline: an executor thread would fight the event loop for the
            # GIL (measured several times slower on 2 cores).
            return engine.predict(requests)
        return await asyncio.get_running_loop().run_in_executor(None, engine.predict, requests)

    async def handle(self, messages: list[Msg], send) -> int:
        """One micro-batch; `send(topic, key, value, headers)` is awaited per record (it queues the
        record with the producer, which picks the key's partition: Kafka's default partitioner).
        Predictions are keyed by the session key, so a session's predictions stay in one partition,
        in order; their identity (`{session_id}/{position}`) is in the value and the `jump-id`
        header. Returns the number of predictions sent."""
        s = self.s
        start = time.time()
        requests, origin = [], []
        for m in messages:
            try:
                requests.append(codec.decode("request", m.value))
                origin.append(m)
            except Exception as exc:  # a foreign record on the internal topic: dead-letter it
                metrics.bad_requests.inc()
                await self._dead(send, m, "bad_request", f"request: {exc}")
        if not requests:
            return 0
        for m in origin:
            metrics.queue_wait.observe(max(0.0, start - m.timestamp))
        engine = self.engine
        t0 = time.perf_counter()
        try:
            preds, unknown = await self._predict(engine, requests)
        except Exception:
            metrics.inference_failures.inc()
            log.exception("inference failed on a batch of %d requests; retrying one by one", len(requests))
            preds, unknown = [], 0
            for r, m in zip(requests, origin):  # isolate the failing requests
                try:
                    (p,), u = await self._predict(engine, [r])
                    preds.append(p)
                    unknown += u
                except Exception as exc:
                    preds.append(None)
                    await self._dead(send, m, "inference_failed", f"inference failed: {type(exc).__name__}: {exc}")
        metrics.compute.observe(time.perf_counter() - t0)
        metrics.batch_size.observe(len(requests))
        metrics.unknown_items.inc(unknown)
        # No wait for delivery here: the runtimes flush the producer before committing request
        # offsets, so an unacknowledged prediction is recomputed after a crash (at-least-once).
        emitted = 0
        emit = time.time()
        fmt = s.output_format
        for pred in preds:
            if pred is None:
                continue
            pred["emit_ts"] = emit
            headers = codec.output_headers(codec.identity("prediction", pred), fmt)
            value = codec.encode("prediction", pred, fmt)
            await send(s.topic_predictions, pred["session_key"].encode(), value, headers)
            metrics.latency.observe(max(0.0, emit - pred["ingest_ts"]))
            metrics.predicted_dwell.observe(pred["dwell_s"])
            emitted += 1
        metrics.count_predictions(engine.version, emitted)
        return emitted
