"""A bare Faust pass-through: the pipeline's app settings, no work -- variants (b) and (b2) of
`jump bench stream` (pipeline/devtools/stream_bench.py), run as `python -m pipeline.devtools.faust_passthrough`.

Settings come from the environment (as for a worker), plus BENCH_MODE (`plain`: the agent re-sends
every value one by one, `async for value in stream: await out.send(value=value)`; `batch`: the
sessionizer's batch hot path without its work: `stream.take_events` with the sessionizer's batch
size and wait, every value re-sent in record batches (runtime.batches), delivery awaited),
BENCH_SRC (the topic read) and BENCH_OUT (the topic written).
"""

import os
import sys

import faust

from pipeline.config import Settings
from pipeline.runtime import faust_compat
from pipeline.runtime.batches import RecordBatches
from pipeline.runtime.faust_app import base_app


def create_app(s: Settings, mode: str, src: str, out: str) -> faust.App:
    app = base_app(s, "passthrough-" + mode, prepare=False)
    source = app.topic(
        src, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=s.partitions
    )
    out_topic = app.topic(
        out, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=s.partitions
    )

    if mode == "plain":

        @app.agent(source)
        async def passthrough(stream):
            async for value in stream:
                await out_topic.send(value=value)
    else:

        @app.agent(source)
        async def passthrough(stream):
            batches = RecordBatches(faust_compat.kafka_producer(app))
            async for events in stream.take_events(s.sessionizer_batch, within=s.sessionizer_wait_s):
                for e in events:
                    batches.add(out, e.message.partition, e.message.key, e.message.value)
                await batches.deliver()

    return app


def main() -> None:
    s = Settings.from_env()
    app = create_app(s, os.environ["BENCH_MODE"], os.environ["BENCH_SRC"], os.environ["BENCH_OUT"])
    sys.argv = [sys.argv[0], "worker", "-l", s.log_level]
    faust.Worker(app, loglevel=s.log_level, loop=None, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
