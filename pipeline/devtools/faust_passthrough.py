"""A bare Faust pass-through: the pipeline's app settings, no work -- variants (b) and (b2) of
`jump bench stream` (pipeline/devtools/stream_bench.py), run as `python -m pipeline.devtools.faust_passthrough`.

Settings come from the environment (as for a worker), plus BENCH_MODE (`plain`: the agent re-sends
every value one by one, `async for value in stream: await out.send(value=value)`; `batch`: the
pipeline's batch hot path, `stream.take_events(1000, within=0.05)` + `app.producer.send`),
BENCH_SRC (the topic read) and BENCH_OUT (the topic written).
"""

import asyncio
import os
import sys

import faust

from pipeline.config import Settings
from pipeline.runtime.faust_app import base_app


def create_app(s: Settings, mode: str, src: str, out: str) -> faust.App:
    app = base_app(s, "passthrough-" + mode)
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
            producer = app.producer
            async for events in stream.take_events(1000, within=0.05):
                futures = [
                    await producer.send(out, None, e.message.value, e.message.partition, None, None) for e in events
                ]
                await asyncio.gather(*futures)

    return app


def main() -> None:
    s = Settings.from_env()
    app = create_app(s, os.environ["BENCH_MODE"], os.environ["BENCH_SRC"], os.environ["BENCH_OUT"])
    sys.argv = [sys.argv[0], "worker", "-l", s.log_level]
    faust.Worker(app, loglevel=s.log_level, loop=None, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
