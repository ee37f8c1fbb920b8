"""Every wire format of the stream, in one place.

Values are msgpack maps carrying a `schema` version. Input clicks may also be JSON objects: the
format is detected per message from its first byte. The output topics a downstream service reads
(predictions, the training log, dead letters) are msgpack or JSON (`JUMP_OUTPUT_FORMAT`); `decode`
reads either (a JSON value starts with `{`, a msgpack map never does), and gives the same dict for
both. In JSON, a dead letter's original `key` / `value` bytes are base64 text.

Identity: every output record carries its idempotent identity (`identity`: `{session_id}/{position}`
for a prediction, the session id for a training-log record, `{topic}/{partition}/{offset}` of the
rejected message for a dead letter) in its value and in the `jump-id` header, and its format in the
`content-type` header; its Kafka key is the session key (`output_headers`). `RECORDS` lists the fields of each record
type; `deploy/asyncapi.yaml` describes the same fields and a test keeps the two in step. `Msg` is
a consumed record (topic, partition, offset, key, value, timestamp) as the runtimes hand it to the
inference and trainer cores, which never see a Kafka client's record type (the sessionizer core
has its own `Message`, whose topic is an index).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass

import msgpack

SCHEMA = 1

#: fields of every record the stream writes (name -> required fields, in wire order)
RECORDS: dict[str, tuple[str, ...]] = {
    "click": ("schema", "user", "session", "item", "ts", "event_id"),
    "request": ("schema", "session_key", "session_id", "position", "items", "ts", "event_ts", "ingest_ts", "partition"),
    "prediction": (
        "schema",
        "session_key",
        "session_id",
        "position",
        "item",
        "item_known",
        "dwell_s",
        "top_items",
        "top_scores",
        "model_version",
        "event_ts",
        "ingest_ts",
        "emit_ts",
    ),
    "training_log": (
        "schema",
        "session_key",
        "session_id",
        "start_ts",
        "end_ts",
        "n_clicks",
        "items",
        "ts",
        "tau",
        "delta",
        "close_reason",
    ),
    "dead_letter": (
        "schema",
        "reason",
        "detail",
        "source_topic",
        "source_partition",
        "source_offset",
        "key",
        "value",
        "dead_ts",
        "key_size",
        "value_size",
    ),
    "tick": ("schema", "tick", "wall_ts"),
    "model_update": (
        "schema",
        "version",
        "seq",
        "path",
        "file_sha256",
        "state_sha256",
        "vocab_sha256",
        "n_items",
        "config_sha256",
        "parent_version",
        "created_ts",
        "sessions_used",
        "recall20",
        "mrr20",
        "dwell_mae_s",
    ),
    "training_metrics": (
        "schema",
        "run_id",
        "started_ts",
        "finished_ts",
        "duration_s",
        "mode",
        "trigger",
        "result",
        "reason",
        "candidate_version",
        "serving_version",
        "sessions_window",
        "sessions_train",
        "sessions_holdout",
        "clicks_train",
        "n_items",
        "new_items",
        "epochs",
        "train_loss",
        "candidate_recall20",
        "candidate_mrr20",
        "candidate_dwell_mae_s",
        "serving_recall20",
        "serving_mrr20",
        "serving_dwell_mae_s",
    ),
}
#: the fields of a click that are optional (one of user/session is required)
OPTIONAL_CLICK_FIELDS = ("schema", "user", "session", "event_id")

#: dead-letter reasons (the `reason` field and the metrics label)
REASONS = (
    "undecodable",
    "not_a_map",
    "missing_field",
    "wrong_type",
    "bad_timestamp",
    "future_timestamp",
    "unsupported_schema",
    "late",
    "session_too_long",
    "bad_request",
    "inference_failed",
    "bad_training_log",
)

#: the key of the internal idle-check tick records (sent to every partition of the ticks topic)
TICK_KEY = b"__jump_tick__"


class BadInput(ValueError):
    """An input message that cannot become a click; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True, slots=True)
class Click:
    key: str  # session key (the value's session or user field)
    item: str  # item id, as a string
    ts: float  # event time, Unix seconds
    event_id: str | None


@dataclass(slots=True)
class Msg:
    """One consumed Kafka record, as every runtime hands it to the inference and trainer cores."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # seconds


_packer = msgpack.Packer(use_bin_type=True)

#: value formats of the output topics (JUMP_OUTPUT_FORMAT) and their content-type header
OUTPUT_FORMATS = {"msgpack": b"application/msgpack", "json": b"application/json"}
#: output kinds whose format JUMP_OUTPUT_FORMAT chooses (the other records are always msgpack)
FORMATTED = ("prediction", "training_log", "dead_letter")
ID_HEADER = "jump-id"
#: fields holding raw bytes (msgpack bin; base64 text in JSON)
_BYTES_FIELDS = {"dead_letter": ("key", "value")}


def identity(kind: str, record: dict) -> str:
    """The idempotent identity of an output record: two records with the same identity are copies
    (at-least-once) with the same content."""
    if kind == "prediction":
        return f"{record['session_id']}/{record['position']}"
    if kind == "training_log":
        return record["session_id"]
    if kind == "dead_letter":
        return dead_letter_id(record["source_topic"], record["source_partition"], record["source_offset"])
    raise ValueError(f"{kind} records have no identity header")


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """A dead letter's identity: where the rejected message was."""
    return f"{topic}/{partition}/{offset}"


def output_headers(ident: str, fmt: str) -> list[tuple[str, bytes]]:
    """The Kafka headers of an output record: its identity and its content type."""
    return [(ID_HEADER, ident.encode()), ("content-type", OUTPUT_FORMATS[fmt])]


def _json_bytes(kind: str, record: dict) -> bytes:
    for name in _BYTES_FIELDS.get(kind, ()):
        v = record[name]
        if v is not None:
            record = {**record, name: base64.b64encode(v).decode("ascii")}
    # allow_nan=False: NaN / Infinity are not JSON (other languages' parsers refuse them)
    # ASCII output: a lone surrogate from a JSON input key is escaped, not an encoding error
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def pack(obj) -> bytes:
    return _packer.pack(obj)


def unpack(raw: bytes):
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def encode(kind: str, record: dict, fmt: str = "msgpack") -> bytes:
    """The bytes of a record (msgpack, or JSON for `fmt="json"`); its fields must be exactly
    RECORDS[kind] (schema added)."""
    schema = record.get("schema", SCHEMA)
    if isinstance(schema, bool) or schema != SCHEMA:
        raise ValueError(f"{kind} record: schema {schema!r}, this code writes {SCHEMA}")
    record = {"schema": SCHEMA, **record}  # schema first (a given one keeps its place, same value)
    if kind != "click" and record.keys() != _FIELDS[kind]:  # per record on the hot path: set views
        missing, extra = _FIELDS[kind] - record.keys(), record.keys() - _FIELDS[kind]
        raise ValueError(f"{kind} record: missing {sorted(missing)}, unexpected {sorted(extra)}")
    if fmt == "json":
        return _json_bytes(kind, record)
    return pack(record)


_FIELDS = {kind: frozenset(fields) for kind, fields in RECORDS.items()}


DEAD_VALUE_MAX = 64 * 1024  # bytes of a rejected value kept in its dead letter
DEAD_KEY_MAX = 1024  # bytes of a rejected key kept


def dead_letter(
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    dead_ts: float,
    fmt: str = "msgpack",
) -> tuple[list[tuple[str, bytes]], bytes]:
    """(headers, value) of the dead letter of a rejected message, what every worker writes, keyed by
    `key`: the reason, and the original bytes -- cut to DEAD_VALUE_MAX / DEAD_KEY_MAX bytes
    (`key_size`, `value_size`: the full sizes), as a rejected 1 MB click must not make a dead letter
    larger than the producer's request limit; its identity (where the message was) in the `jump-id`
    header."""
    assert reason in REASONS, reason
    record = {
        "reason": reason,
        "detail": detail[:500],
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "key": key if key is None else key[:DEAD_KEY_MAX],
        "value": value if value is None else value[:DEAD_VALUE_MAX],
        "dead_ts": dead_ts,
        "key_size": None if key is None else len(key),
        "value_size": None if value is None else len(value),
    }
    return output_headers(dead_letter_id(topic, partition, offset), fmt), encode("dead_letter", record, fmt)


def decode(kind: str, raw: bytes) -> dict:
    """A record written by `encode`, msgpack or JSON (detected); raises ValueError on a foreign
    schema. A JSON dead letter's base64 `key` / `value` come back as bytes."""
    if raw[:1] == b"{":  # JSON (JUMP_OUTPUT_FORMAT=json); a msgpack map starts at 0x80 or above
        try:
            obj = json.loads(raw)
            for name in _BYTES_FIELDS.get(kind, ()):
                if isinstance(obj, dict) and isinstance(obj.get(name), str):
                    obj[name] = base64.b64decode(obj[name], validate=True)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise ValueError(f"not a JSON {kind} record: {type(e).__name__}") from None
    else:
        try:
            obj = unpack(raw)
        except Exception as e:  # msgpack raises assorted types on foreign bytes
            raise ValueError(f"not a msgpack {kind} record: {type(e).__name__}") from None
    schema = obj.get("schema") if isinstance(obj, dict) else None
    if isinstance(schema, bool) or schema != SCHEMA:
        raise ValueError(f"not a schema-{SCHEMA} {kind} record")
    return obj


def _load_any(raw: bytes):
    """JSON when the first non-blank byte is '{' or '[', msgpack otherwise."""
    if raw is None or len(raw) == 0:
        raise BadInput("undecodable", "empty value")
    if raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
        raw = raw[3:]
        head = raw.lstrip()[:1]
    elif raw[0] >= 0x80:  # msgpack (a map or array starts at 0x80 or above), not JSON: no lstrip copy
        head = b""
    else:
        head = raw.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise BadInput("undecodable", f"invalid JSON: {e}") from None
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types (ExtraData, FormatError, ValueError...)
        raise BadInput("undecodable", f"neither JSON nor msgpack: {type(e).__name__}") from None


def _id_field(obj: dict, name: str) -> str:
    v = obj[name]
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise BadInput("wrong_type", f"{name} must be a string or an integer, got {type(v).__name__}")
    s = str(v)
    if not s or len(s) > 256:
        raise BadInput("wrong_type", f"{name} must have 1-256 characters")
    return s


def decode_click(
    raw: bytes, key_fields: tuple[str, ...] = ("session", "user"), now: float | None = None, max_future_s: float = 300.0
) -> Click:
    """Parse one input value into a Click, or raise BadInput with the reason."""
    obj = _load_any(raw)
    if not isinstance(obj, dict):
        raise BadInput("not_a_map", f"value is a {type(obj).__name__}, expected a map")
    schema = obj.get("schema", SCHEMA)
    if isinstance(schema, bool) or schema != SCHEMA:
        raise BadInput("unsupported_schema", f"schema {schema!r}, this worker reads {SCHEMA}")
    for key_field in key_fields:  # the first present (a loop: a generator costs more per click)
        if obj.get(key_field) is not None:
            break
    else:
        raise BadInput("missing_field", f"no session key field ({' or '.join(key_fields)})")
    for name in ("item", "ts"):
        if name not in obj or obj[name] is None:
            raise BadInput("missing_field", f"no {name!r} field")
    key, item = _id_field(obj, key_field), _id_field(obj, "item")
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise BadInput("wrong_type", f"ts must be a number of Unix seconds, got {type(ts).__name__}")
    try:
        ts = float(ts)
    except OverflowError:
        raise BadInput("bad_timestamp", "ts out of range") from None
    if not math.isfinite(ts) or ts < 0:
        raise BadInput("bad_timestamp", f"ts {ts!r} is not a finite non-negative number")
    if now is not None and ts > now + max_future_s:
        raise BadInput("future_timestamp", f"ts {ts:.3f} is {ts - now:.0f} s ahead of wall-clock")
    event_id = _id_field(obj, "event_id") if obj.get("event_id") is not None else None
    return Click(key, item, ts, event_id)


def encode_click(
    key: str, item: str, ts: float, event_id: str | None = None, key_field: str = "user", fmt: str = "msgpack"
) -> bytes:
    """An input click as a producer should write it (used by `jump replay` and the tests)."""
    obj = {"schema": SCHEMA, key_field: key, "item": item, "ts": float(ts)}
    if event_id is not None:
        obj["event_id"] = event_id
    return json.dumps(obj).encode() if fmt == "json" else pack(obj)


def is_tick(key: bytes | None) -> bool:
    return key == TICK_KEY
