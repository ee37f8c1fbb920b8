"""The JUMP stream: Kafka workers around jump_core's model (pipeline imports jump_core, never the reverse).

- config.py, codec.py, metrics.py: every setting (environment variables), every wire format,
  the Prometheus metrics and health probes;
- core/: the workers' logic without Kafka -- sessionization rules, the inference engine and
  runner (model lifecycle, hot reload), the trainer core;
- runtime/: the workers on Kafka -- Kafka client helpers, the Faust apps (sessionizer, Faust
  inference runtime) and faust_compat (every use of Faust's and aiokafka's internals), the aiokafka
  inference runtime, the trainer process;
- devtools/: development tooling -- embedded broker, worker processes, replay, tail, demo, stream
  benchmark;
- cli.py: the `jump` command (jump_core's commands plus the stream's).
"""
