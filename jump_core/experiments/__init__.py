"""Experiments: the benchmark harness, training throughput, and the reports and figures."""
