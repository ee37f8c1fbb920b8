"""Peer stream processors of `jump bench stream --workload sessions` (pipeline/devtools/sessions_bench.py):
the same sessionizing job written for Quix Streams and Bytewax, each run as a subprocess with the
interpreter that has the optional `bench` extra (see sessions_bench.peer_python). These modules
import only the standard library, msgpack and their framework -- never the rest of `pipeline`."""
