"""The `jump` command with the stream's sub-commands added to jump_core's offline ones.

Here: the workers (`jump sessionizer`, `inference`, `trainer`) and the operator commands (`jump
topics`, `jump models list|promote`). The development tools add their own (pipeline/devtools/:
`jump broker`, `replay`, `tail`, `demo-stream`, `bench stream`). jump_core never imports the stream;
this module extends its parser (pipeline imports jump_core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from jump_core import cli as core_cli

from .config import settings_help


def _worker_parser(sub, name: str, help_: str, description: str):
    p = sub.add_parser(
        name,
        help=help_,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (environment variables, default, meaning):\n" + settings_help(),
    )
    return p


def _add_sessionizer(sub):
    p = _worker_parser(
        sub,
        "sessionizer",
        "run the sessionizer worker (Faust)",
        "Consume clicks, keep open sessions in a changelog-backed Table, emit one inference "
        "request per click, a training-log record per closed session, dead letters for bad "
        "input. Scale out by running more workers (at most one per clicks partition).",
    )
    p.set_defaults(func=_logged_errors(cmd_sessionizer))


def _add_inference(sub):
    p = _worker_parser(
        sub,
        "inference",
        "run the inference worker (JUMP on CUDA when available, else CPU)",
        "Consume inference requests in micro-batches (JUMP_MAX_BATCH, JUMP_MAX_WAIT_S), run "
        "JUMP's live prediction, emit one prediction per click.",
    )
    p.set_defaults(func=_logged_errors(cmd_inference))


def _add_trainer(sub):
    p = _worker_parser(
        sub,
        "trainer",
        "run the trainer (continuous training from the training log)",
        "Read jump-training-log into a bounded window of recent sessions; every "
        "JUMP_TRAINER_EVERY_SESSIONS new sessions or JUMP_TRAINER_EVERY_S seconds, fine-tune "
        "(or retrain) JUMP, compare it with the serving model on the most recent held-out "
        "sessions (live protocol) and promote it when not worse by more than JUMP_TRAINER_MARGIN: "
        "a versioned checkpoint in JUMP_MODEL_DIR, announced on jump-model-updates. One trainer "
        "per deployment.",
    )
    p.set_defaults(func=_logged_errors(cmd_trainer))


def _start_logging(s, role: str) -> None:
    """The workers' log format (JUMP_LOG_FORMAT, JUMP_LOG_LEVEL), set before anything can log (the
    broker wait logs at once)."""
    from . import logs

    logs.setup(s, role)


def _logged_errors(cmd):
    """A worker command whose fatal one-line error (exit status 2) is, once it logs JSON, a JSON
    record too rather than a plain line among them."""
    import functools

    @functools.wraps(cmd)
    def run(a):
        try:
            return cmd(a)
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            import logging

            from . import logs

            if not logs.json_enabled():
                raise
            logging.getLogger("jump.pipeline").error("jump %s: error: %s", a.command, e)
            return 2

    return run


def _wait_for_broker(s, role: str) -> None:
    """Log the bootstrap servers, a line every 5 s while none answers; one-line exit 2 after JUMP_BROKER_WAIT_S."""
    import logging

    from .runtime.kafka import wait_for_broker

    _start_logging(s, role)
    log = logging.getLogger("jump.pipeline")
    wait_for_broker(s, say=lambda line: log.info("%s: %s", role, line))


def _run_async_worker(s, main, role: str) -> int:
    """A worker on its own asyncio loop: logging, the broker, topics, metrics endpoint, then main(settings)."""
    import asyncio

    from . import metrics
    from .runtime.kafka import ensure_topics

    _wait_for_broker(s, role)
    if s.create_topics:
        ensure_topics(s)
    metrics.serve(s.metrics_port, s.metrics_addr, s.health_stale_s)
    asyncio.run(main(s))
    return 0


def cmd_trainer(a) -> int:
    from .config import Settings
    from .runtime.trainer import run_trainer

    return _run_async_worker(Settings.from_env(), run_trainer, "trainer")


def _faust_argv(level: str) -> None:
    # faust.Worker reads sys.argv for its own command line; give it a clean one
    sys.argv = [sys.argv[0], "worker", "-l", level]


def cmd_sessionizer(a) -> int:
    from .config import Settings
    from .runtime import faust_compat
    from .runtime.faust_app import create_sessionizer_app, run_worker

    s = Settings.from_env()
    faust_compat.check_versions()  # an untested Faust is refused before anything waits
    _wait_for_broker(s, "sessionizer")
    _faust_argv(s.log_level)
    run_worker(create_sessionizer_app(s), s)
    return 0


def cmd_inference(a) -> int:
    from .config import Settings
    from .runtime import faust_compat
    from .runtime.faust_app import create_inference_app, run_worker

    s = Settings.from_env()
    if s.inference_runtime == "aiokafka":
        from .runtime.inference import run_direct

        return _run_async_worker(s, run_direct, "inference")
    faust_compat.check_versions()
    _wait_for_broker(s, "inference")
    _faust_argv(s.log_level)
    run_worker(create_inference_app(s), s)
    return 0


# --------------------------------------------------------------------------- operator commands


def add_topics(subparsers) -> None:
    p = subparsers.add_parser(
        "topics",
        help="create the pipeline's topics (idempotent) and check their partition counts",
        description="Create every topic the workers use with $JUMP_PARTITIONS / $JUMP_OUTPUT_PARTITIONS "
        "partitions; existing topics must have those counts (co-partitioning).",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the cluster")
    p.set_defaults(func=cmd_topics)


def cmd_topics(a) -> int:
    from .config import Settings
    from .runtime.kafka import ensure_topics, kafka_errors_as_runtime, wait_for_broker

    settings = Settings.from_env()

    def run():
        wait_for_broker(settings, a.timeout)
        return ensure_topics(settings, timeout_s=a.timeout)

    print(json.dumps(kafka_errors_as_runtime(run), indent=2))
    return 0


def add_models(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the published models, or promote one (rollback, or an offline model)",
        description="The versioned checkpoints of $JUMP_MODEL_DIR (written by `jump trainer`). `promote` "
        "publishes a copy of a checkpoint as the next version, makes it current and announces it on "
        "$JUMP_TOPIC_MODEL_UPDATES, so every inference worker swaps to it between two micro-batches.",
    )
    sub = p.add_subparsers(dest="models_command", required=True)
    ls = sub.add_parser("list", help="the checkpoints, oldest first; * marks the current one")
    ls.add_argument("--json", action="store_true", help="print the announcement records as JSON")
    ls.set_defaults(func=cmd_models_list)
    pr = sub.add_parser("promote", help="make a checkpoint the served model (a new version with its weights)")
    pr.add_argument("source", help="a version (jump-v000002:3f2a9c1e0b7d), a seq (2), or a checkpoint file path")
    pr.add_argument(
        "--no-announce",
        action="store_true",
        help="only update the model directory (workers pick it up at their next JUMP_RELOAD_CHECK_S)",
    )
    pr.set_defaults(func=cmd_models_promote)


def cmd_models_list(a) -> int:
    from jump_core.artifacts.model_store import ModelStore

    from .config import Settings

    settings = Settings.from_env()
    store = ModelStore(settings.model_dir, settings.trainer_keep)
    cur = store.current()
    rows = []
    for seq, path in store.checkpoints():
        side = path.with_suffix(".json")
        rows.append(json.loads(side.read_text()) if side.is_file() else {"seq": seq, "path": str(path)})
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no models in {store.dir}")
    for r in rows:
        mark = "*" if cur and r.get("seq") == cur["seq"] else " "
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["created_ts"])) if r.get("created_ts") else "?"
        recall = "-" if r.get("recall20") is None else f"{r['recall20']:.4f}"
        print(
            f"{mark} {r.get('version', Path(r['path']).stem):<28} seq {r['seq']:>4}  {created} UTC  "
            f"Recall@20 {recall}  items {r.get('n_items', '?')}  parent {r.get('parent_version')}"
        )
    return 0


def cmd_models_promote(a) -> int:
    from jump_core.artifacts.model_store import ModelStore

    from . import codec
    from .config import Settings
    from .runtime.kafka import kafka_errors_as_runtime, produce_records

    settings = Settings.from_env()
    record = ModelStore(settings.model_dir, settings.trainer_keep).adopt(a.source)
    if not a.no_announce:
        kafka_errors_as_runtime(
            lambda: produce_records(
                settings,
                settings.topic_model_updates,
                [(record["version"].encode(), codec.encode("model_update", record))],
                partition=0,
            )
        )
    print(json.dumps(record, indent=1))
    return 0


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    from .devtools.broker import add_broker
    from .devtools.demo import add_demo
    from .devtools.replay import add_replay
    from .devtools.sessions_bench import add_sessionizer_workers_option
    from .devtools.stream_bench import add_bench_stream
    from .devtools.tail import add_tail

    # the order of `jump --help`
    extra = [
        _add_sessionizer,
        _add_inference,
        _add_trainer,
        add_broker,
        add_topics,
        add_replay,
        add_tail,
        add_models,
        add_demo,
    ]
    extra_bench = [add_bench_stream, add_sessionizer_workers_option]  # the latter extends the former's parser
    return core_cli.build_parser(extra=extra, extra_bench=extra_bench)


def main(argv: list[str] | None = None) -> int:
    return core_cli.main(argv, parser=build_parser())


if __name__ == "__main__":
    sys.exit(main())
