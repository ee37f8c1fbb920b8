"""The `jump` command with the stream's sub-commands added to jump_core's offline ones.

jump_core never imports the stream; this module extends its parser (pipeline imports jump_core).
"""
from __future__ import annotations

import argparse
import sys

from jump_core import cli as core_cli

from .config import settings_help


def _worker_parser(sub, name: str, help_: str, description: str):
    p = sub.add_parser(name, help=help_, description=description,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="settings (environment variables, default, meaning):\n" + settings_help())
    return p


def _add_sessionizer(sub):
    p = _worker_parser(sub, "sessionizer", "run the sessionizer worker (Faust)",
                       "Consume clicks, keep open sessions in a changelog-backed Table, emit one inference "
                       "request per click, a training-log record per closed session, dead letters for bad "
                       "input. Scale out by running more workers (at most one per clicks partition).")
    p.set_defaults(func=cmd_sessionizer)


def _add_inference(sub):
    p = _worker_parser(sub, "inference", "run the inference worker (JUMP on CUDA when available, else CPU)",
                       "Consume inference requests in micro-batches (JUMP_MAX_BATCH, JUMP_MAX_WAIT_S), run "
                       "JUMP's live prediction, emit one prediction per click.")
    p.set_defaults(func=cmd_inference)


def _add_trainer(sub):
    p = _worker_parser(sub, "trainer", "run the trainer (continuous training from the training log)",
                       "Read jump-training-log into a bounded window of recent sessions; every "
                       "JUMP_TRAINER_EVERY_SESSIONS new sessions or JUMP_TRAINER_EVERY_S seconds, fine-tune "
                       "(or retrain) JUMP, compare it with the serving model on the most recent held-out "
                       "sessions (live protocol) and promote it when not worse by more than JUMP_TRAINER_MARGIN: "
                       "a versioned checkpoint in JUMP_MODEL_DIR, announced on jump-model-updates. One trainer "
                       "per deployment.")
    p.set_defaults(func=cmd_trainer)


def _run_async_worker(s, main) -> int:
    """A worker on its own asyncio loop: logging, topics, metrics endpoint, then main(settings)."""
    import asyncio
    import logging

    from . import metrics
    from .devtools.broker import ensure_topics
    logging.basicConfig(level=s.log_level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    if s.create_topics:
        ensure_topics(s)
    metrics.serve(s.metrics_port, s.metrics_addr, s.health_stale_s)
    asyncio.run(main(s))
    return 0


def cmd_trainer(a) -> int:
    from .config import Settings
    from .core.trainer import run_trainer
    return _run_async_worker(Settings.from_env(), run_trainer)


def _faust_argv(level: str) -> None:
    # faust.Worker reads sys.argv for its own command line; give it a clean one
    sys.argv = [sys.argv[0], "worker", "-l", level]


def cmd_sessionizer(a) -> int:
    from .runtime.faust_app import create_sessionizer_app, run_worker
    from .config import Settings
    s = Settings.from_env()
    _faust_argv(s.log_level)
    run_worker(create_sessionizer_app(s), s)
    return 0


def cmd_inference(a) -> int:
    from .runtime.faust_app import create_inference_app, run_worker
    from .config import Settings
    s = Settings.from_env()
    if s.inference_runtime == "aiokafka":
        from .core.inference import run_direct
        return _run_async_worker(s, run_direct)
    _faust_argv(s.log_level)
    run_worker(create_inference_app(s), s)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .devtools import tools
    from .devtools.stream_bench import add_bench_stream
    from .devtools.demo import add_demo
    extra = [_add_sessionizer, _add_inference, _add_trainer, tools.add_broker, tools.add_topics, tools.add_replay,
             tools.add_tail, tools.add_models,
             add_demo]
    extra_bench = [add_bench_stream]
    return core_cli.build_parser(extra=extra, extra_bench=extra_bench)


def main(argv: list[str] | None = None) -> int:
    return core_cli.main(argv, parser=build_parser())


if __name__ == "__main__":
    sys.exit(main())
