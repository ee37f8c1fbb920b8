"""The trainer without Kafka (`TrainerCore`): continuous training from the stream's own training log.

The process (`jump trainer`, runtime.trainer.run_trainer) reads every partition of
jump-training-log from the beginning (no consumer group: the window is rebuilt from the topic at
start-up, so the topic's retention must cover the window); the core keeps the most recent
JUMP_TRAINER_WINDOW_SESSIONS closed sessions and, every JUMP_TRAINER_EVERY_SESSIONS new sessions or
JUMP_TRAINER_EVERY_S seconds, runs `jump_core.training.continual.train_candidate` on a snapshot of
the window (the process runs it in a background thread while consumption continues). A promoted
candidate is published to JUMP_MODEL_DIR (atomic, versioned, checksummed:
jump_core.artifacts.model_store) and announced on jump-model-updates; every run, promoted or not,
is reported on jump-training-metrics and in the Prometheus metrics. Undecodable training-log
records are dead-lettered (`bad_training_log`).

Counts: jump_trainer_records_consumed_total = sessions windowed + sessions skipped (duplicate,
too_short) + dead letters with reason bad_training_log.
After a restart the rebuilt window counts as new sessions: the first run follows as soon as
the window holds JUMP_TRAINER_EVERY_SESSIONS sessions.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from jump_core.artifacts.checkpoint import load_checkpoint
from jump_core.artifacts.model_store import ModelStore, model_version
from jump_core.training.continual import (
    ContinualConfig,
    RunResult,
    TrainingWindow,
    session_from_record,
    train_candidate,
)

from .. import codec, metrics
from ..codec import Msg
from ..config import Settings

log = logging.getLogger("jump.trainer")


class TrainerCore:
    """The trainer without Kafka: records in, (announcement, training-metrics record) out."""

    def __init__(self, settings: Settings, store: ModelStore | None = None, clock=time.time):
        self.s = s = settings
        self.store = store or ModelStore(s.model_dir, s.trainer_keep)
        self.clock = clock
        self.window = TrainingWindow(s.trainer_window_sessions)
        self.new_sessions = 0
        self.last_run = clock()
        self.runs = 0
        self.serving = None  # (model, items, version) of the model in service

    def config(self) -> ContinualConfig:
        s = self.s
        return ContinualConfig(
            mode=s.trainer_mode,
            epochs=s.trainer_epochs,
            lr=s.trainer_lr,
            time_budget_s=s.trainer_time_budget_s,
            holdout_fraction=s.trainer_holdout_fraction,
            margin=s.trainer_margin,
            min_item_count=s.trainer_min_item_count,
            dim=s.trainer_dim,
            c1=s.c1,
            c2=s.c2,
            device=s.device,
        )

    def load_serving(self) -> None:
        """The model to beat: JUMP_MODEL_DIR's current one, else the JUMP_CHECKPOINT file, else none."""
        try:
            record = self.store.current()
            if record is not None:
                model, meta = self.store.verify(record)
                self.serving = (model, meta["items"], record["version"])
                metrics.trainer_last_promotion.set(record.get("created_ts") or 0)
            elif Path(self.s.checkpoint).is_file():
                model, meta = load_checkpoint(self.s.checkpoint)
                self.serving = (model, meta["items"], model_version(self.s.checkpoint, meta["state_sha256"]))
        except Exception as exc:  # an unusable serving model: train from scratch, promote on merit
            log.error("cannot load the serving model (%s); the next run trains from scratch", exc)
            self.serving = None
        if self.serving is not None:
            log.info("serving model %s (%d items)", self.serving[2], len(self.serving[1]))

    def ingest(self, messages: list[Msg]) -> list[tuple[str, bytes | None, bytes, int]]:
        """Add training-log records to the window; returns dead letters as (topic, key, value, headers)
        (partitioned by their key, the rejected record's)."""
        dead = []
        for m in messages:
            metrics.trainer_consumed.inc()
            try:
                session = session_from_record(codec.decode("training_log", m.value))
            except ValueError as exc:
                metrics.dead_letters.labels("bad_training_log").inc()
                headers, value = codec.dead_letter(
                    "bad_training_log",
                    str(exc),
                    m.topic,
                    m.partition,
                    m.offset,
                    m.key,
                    m.value,
                    time.time(),
                    self.s.output_format,
                )
                dead.append((self.s.topic_dead_letters, m.key, value, headers))
                continue
            result = self.window.add(session)
            if result == "added":
                metrics.trainer_windowed.inc()
                self.new_sessions += 1
            else:
                metrics.trainer_skipped.labels(result).inc()
        metrics.trainer_window.set(len(self.window))
        return dead

    def due(self) -> str | None:
        """'sessions' or 'time' when a run should start now, else None."""
        s = self.s
        if len(self.window) < s.trainer_min_sessions or self.new_sessions == 0:
            return None
        if self.new_sessions >= s.trainer_every_sessions:
            return "sessions"
        if self.clock() - self.last_run >= s.trainer_every_s:
            return "time"
        return None

    def run(self, trigger: str) -> tuple[dict | None, dict]:
        """One training run (blocking): (model_update record or None, training_metrics record)."""
        started = self.clock()
        self.runs += 1
        run_id = f"run-{self.runs:06d}-{int(started)}"
        snapshot = self.window.snapshot()
        self.new_sessions, self.last_run = 0, started
        serving = self.serving
        rec = {
            "run_id": run_id,
            "started_ts": started,
            "trigger": trigger,
            "serving_version": serving and serving[2],
            "sessions_window": len(snapshot),
            "candidate_version": None,
        }
        update = None
        try:
            r = train_candidate(snapshot, serving and serving[:2], self.config(), log=log.info)
            rec.update(self._result_fields(r))
            if r.promote:
                update = self.store.publish(
                    r.model,
                    r.items,
                    r.fingerprint,
                    train_info=r.summary,
                    parent_version=serving and serving[2],
                    sessions_used=r.sessions_train,
                    metrics=r.candidate,
                )
                self.serving = (r.model, r.items, update["version"])
                rec.update(result="promoted", candidate_version=update["version"])
                metrics.trainer_new_items.inc(len(r.new_items))
                metrics.trainer_last_promotion.set(self.clock())
            else:
                rec["result"] = "rejected"
        except Exception as exc:
            log.exception("training run %s failed", run_id)
            rec.update({k: None for k in codec.RECORDS["training_metrics"] if k not in rec and k != "schema"})
            rec.update(
                result="failed",
                reason=f"{type(exc).__name__}: {exc}"[:500],
                mode=self.s.trainer_mode if serving else "initial",
                sessions_train=0,
                sessions_holdout=0,
                clicks_train=0,
                n_items=0,
                new_items=0,
                epochs=0,
            )
        finished = self.clock()
        rec.update(finished_ts=finished, duration_s=round(finished - started, 3))
        self._observe(rec)
        log.info("%s: %s (%s)", run_id, rec["result"], rec["reason"])
        return update, rec

    @staticmethod
    def _result_fields(r: RunResult) -> dict:
        history = r.summary["history"]
        best = history[r.summary["best_epoch"] - 1] if r.summary["best_epoch"] else None
        serving = r.serving or {}
        return {
            "mode": r.mode,
            "reason": r.reason,
            "sessions_train": r.sessions_train,
            "sessions_holdout": r.sessions_holdout,
            "clicks_train": r.clicks_train,
            "n_items": len(r.items),
            "new_items": len(r.new_items),
            "epochs": len(history),
            "train_loss": best["train_loss_per_click"] if best else None,
            "candidate_recall20": r.candidate["recall@20"],
            "candidate_mrr20": r.candidate["mrr@20"],
            "candidate_dwell_mae_s": r.candidate["dwell_mae_s"],
            "serving_recall20": serving.get("recall@20"),
            "serving_mrr20": serving.get("mrr@20"),
            "serving_dwell_mae_s": serving.get("dwell_mae_s"),
        }

    @staticmethod
    def _observe(rec: dict) -> None:
        metrics.trainer_runs.labels(rec["result"]).inc()
        metrics.trainer_run_seconds.observe(rec["duration_s"])
        metrics.trainer_last_run.set(rec["finished_ts"])
        if rec["result"] == "failed":
            return
        for model in ("candidate", "serving"):
            for metric, field in (("recall_at_20", "recall20"), ("mrr_at_20", "mrr20")):
                value = rec[f"{model}_{field}"]
                if value is not None:
                    metrics.trainer_holdout.labels(model, metric).set(value)
            if rec[f"{model}_dwell_mae_s"] is not None:
                metrics.trainer_holdout_dwell_mae.labels(model).set(rec[f"{model}_dwell_mae_s"])
        if rec["train_loss"] is not None:
            metrics.trainer_train_loss.set(rec["train_loss"])
        metrics.trainer_sessions_used.labels("train").set(rec["sessions_train"])
        metrics.trainer_sessions_used.labels("holdout").set(rec["sessions_holdout"])
        metrics.trainer_vocabulary.set(rec["n_items"])
