"""Quix Streams peer of `jump bench stream --workload sessions`: session windows over the source clicks.

Run by the harness as `python -m pipeline.devtools.peers.quix_sessions` with the bench interpreter and
the environment of common.Env. The job, in Quix Streams 3.28.1 terms:

    clicks (msgpack, decoded as the sessionizer decodes them, event time = the value's `ts`)
      -> session_window(inactivity_gap_ms=gap, grace_ms=grace), grouped by the message key (the user)
      -> agg(clicks=Count(), ts=Collect("ts"))      # the session's click times, as the training log has
                                                    # (JUMP_BENCH_QUIX_AGG=count: Count() only, the
                                                    # cheapest session window; checked by counts)
      -> final(closing_strategy="key")              # emit a session once it has closed
      -> output topic (JSON: start, end, clicks, ts; key = the user)

When a session closes (quixstreams/dataframe/windows/session.py, 3.28.1): with closing_strategy="key"
the watermark is the key's own largest event time, and a session closes once that watermark passes
`last event + 2 * gap + grace` -- its exclusive end (last + 1 ms) <= watermark - 2*gap - grace. So a
session closes only when a later click of the same user comes more than 2 gaps + grace after it
(sessions_workload.expected_closed rule "key_time"). State lives in RocksDB with changelog topics
(Quix's defaults, like the project's sessionizer's changelog-backed table); at-least-once.

The app stops itself (Application.stop: flush and commit) once the N-th message was processed.
"""

from __future__ import annotations

import os

from pipeline.devtools.peers.common import Env, Meter, decode


def main() -> None:
    import quixstreams
    from quixstreams import Application
    from quixstreams.dataframe.windows import Collect, Count
    from quixstreams.models.serializers import Deserializer

    env = Env()
    meter = Meter(env, "quixstreams", quixstreams.__version__)

    class Clicks(Deserializer):
        """msgpack -> the fields the job needs (every value is fully decoded, as in the sessionizer)."""

        def __call__(self, value: bytes, ctx) -> dict:
            meter.first()
            obj = decode(value)
            return {"user": obj["user"], "item": obj["item"], "ts": float(obj["ts"])}

    def processed(topic: str, partition: int, offset: int) -> None:
        if meter.tick():
            app.stop()  # graceful: the producer is flushed and the offsets committed

    app = Application(
        broker_address=env.bootstrap,
        consumer_group=env.group,
        auto_offset_reset="earliest",
        state_dir=env.state_dir or None,
        loglevel="WARNING",
        on_message_processed=processed,
        # Tansu: group joins need a shorter session timeout than librdkafka's 45 s, and a waiting fetch
        # is answered late -- the same two settings the project's workers use (JUMP_FETCH_MAX_WAIT_MS).
        consumer_extra_config={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 3_000, "fetch.wait.max.ms": 50},
    )
    source = app.topic(
        env.src,
        key_deserializer="bytes",
        value_deserializer=Clicks(),
        # event time from the value, as the sessionizer reads it (the Kafka timestamp carries the same)
        timestamp_extractor=lambda value, headers, timestamp, timestamp_type: round(value["ts"] * 1000),
    )
    out = app.topic(env.out, key_serializer="bytes", value_serializer="json")
    # Tansu's DescribeConfigs reports no `retention.ms`, which Quix reads to configure the window's
    # changelog topic: say "infinite" (-1), as a topic without a retention limit has.
    source.broker_config.extra_config.setdefault("retention.ms", "-1")
    sdf = app.dataframe(source)
    window = sdf.session_window(inactivity_gap_ms=round(env.gap_s * 1000), grace_ms=round(env.grace_s * 1000))
    if os.environ.get("JUMP_BENCH_QUIX_AGG", "collect") == "count":  # the cheapest Quix session window
        sdf = window.agg(clicks=Count()).final(closing_strategy="key")
        sdf = sdf.apply(lambda r: {"start": r["start"], "end": r["end"], "clicks": r["clicks"], "ts": None})
    else:
        sdf = window.agg(clicks=Count(), ts=Collect("ts")).final(closing_strategy="key")
        sdf = sdf.apply(lambda r: {"start": r["start"], "end": r["end"], "clicks": r["clicks"], "ts": r["ts"]})
    sdf.to_topic(out)
    app.run()
    meter.write(stopped=True)


if __name__ == "__main__":
    main()
