"""deploy/asyncapi.yaml and pipeline/codec.py describe the same wire formats.

Every field the code writes is documented (and nothing else), required lists match, enums match
codec.REASONS, channel addresses are the default topic names of pipeline.config.Settings, and
sample records encoded by the codec satisfy the documented JSON-schema types (checked by the
tiny validator below: no new dependency).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from jump_core.sessions import censor, session_id
from pipeline import codec
from pipeline.config import Settings

DOC_PATH = Path(__file__).resolve().parents[3] / "deploy" / "asyncapi.yaml"
DOC = yaml.safe_load(DOC_PATH.read_text())

OUTPUT_KINDS = ("request", "prediction", "training_log", "dead_letter", "tick", "model_update", "training_metrics")
#: channel id in the document -> (Settings field of its topic, record kinds of its messages)
CHANNELS = {
    "clicks": ("topic_clicks", {"click"}),
    "clicksRekeyed": ("topic_rekeyed", {"click"}),
    "sessionizerTicks": ("topic_ticks", {"tick"}),
    "inferenceRequests": ("topic_requests", {"request"}),
    "predictions": ("topic_predictions", {"prediction"}),
    "trainingLog": ("topic_training_log", {"training_log"}),
    "deadLetters": ("topic_dead_letters", {"dead_letter"}),
    "modelUpdates": ("topic_model_updates", {"model_update"}),
    "trainingMetrics": ("topic_training_metrics", {"training_metrics"}),
}


# -- $ref resolution ------------------------------------------------------------------------------
def resolve(ref: str):
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node = DOC
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def deref(node):
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        assert node["$ref"] not in seen, f"$ref cycle at {node['$ref']}"
        seen.add(node["$ref"])
        node = resolve(node["$ref"])
    return node


def all_refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from all_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_refs(v)


def schema_of(kind: str) -> dict:
    return deref(DOC["components"]["schemas"][kind])


def message_kind(message) -> str:
    """The record kind (components/schemas key) of a message's payload."""
    payload = deref(message)["payload"]
    assert "$ref" in payload, "payloads reference components/schemas/<kind>"
    return payload["$ref"].rsplit("/", 1)[1]


# -- the tiny JSON-schema checker ------------------------------------------------------------------
def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_TYPES = {
    # msgpack bin (Python bytes) is documented as a string with format: binary
    "string": lambda v, s: isinstance(v, bytes) if s.get("format") == "binary" else isinstance(v, str),
    "number": lambda v, s: _is_number(v) and math.isfinite(v),
    "integer": lambda v, s: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v, s: isinstance(v, bool),
    "null": lambda v, s: v is None,
    "array": lambda v, s: isinstance(v, list),
    "object": lambda v, s: isinstance(v, dict),
}


def _same(a, b) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def check(value, schema, path: str = "$") -> list[str]:
    """Errors of `value` against a (dereferenced) schema; [] when it conforms."""
    schema = deref(schema)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        unknown = set(types) - set(_TYPES)
        assert not unknown, f"{path}: unknown JSON-schema types {unknown}"
        if not any(_TYPES[t](value, schema) for t in types):
            return [f"{path}: {type(value).__name__} {value!r:.60} is not {'/'.join(types)}"]
    errors = []
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{path}: {value!r} != const {schema['const']!r}")
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if _is_number(value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > maximum {schema['maximum']}")
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
            errors.append(f"{path}: length {len(value)} outside [minLength, maxLength]")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", math.inf):
            errors.append(f"{path}: {len(value)} items outside [minItems, maxItems]")
        if "items" in schema:
            for i, v in enumerate(value):
                errors += check(v, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing required {name!r}" for name in schema.get("required", ()) if name not in value]
        for name, v in value.items():
            if name in props:
                errors += check(v, props[name], f"{path}.{name}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{path}: undocumented field {name!r}")
    if "anyOf" in schema and all(check(value, sub, path) for sub in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    return errors


# -- sample records, as the stream writes them ----------------------------------------------------
def _samples() -> dict[str, list[dict]]:
    ts = [1700000000.25, 1700000031.0, 1700002500.0, 1700002512.5]
    items = ["31337", "42", "7", "42"]
    sid = session_id("u-1042", ts[0])
    tau, delta = censor(ts, c1=2000.0, c2=30.0)
    request = {
        "session_key": "u-1042",
        "session_id": sid,
        "position": 3,
        "items": items,
        "ts": ts,
        "event_ts": ts[-1],
        "ingest_ts": 1700002512.61,
        "partition": 3,
    }
    prediction = {
        "session_key": "u-1042",
        "session_id": sid,
        "position": 3,
        "item": "42",
        "item_known": True,
        "dwell_s": math.exp(3.2),
        "top_items": ["7", "42", "9"],
        "top_scores": [5.5, 4.0, -1.25],
        "model_version": "model:3f2a9c1e0b7d",
        "event_ts": ts[-1],
        "ingest_ts": 1700002512.61,
        "emit_ts": 1700002512.7,
    }
    unknown = {**prediction, "item": "never-seen", "item_known": False, "position": 0}
    training_log = {
        "session_key": "u-1042",
        "session_id": sid,
        "start_ts": ts[0],
        "end_ts": ts[-1],
        "n_clicks": len(ts),
        "items": items,
        "ts": ts,
        "tau": tau.tolist(),
        "delta": delta.tolist(),
        "close_reason": "gap",
    }
    dead = {
        "reason": "wrong_type",
        "detail": "ts must be a number of Unix seconds, got str",
        "source_topic": "clicks",
        "source_partition": 1,
        "source_offset": 12345,
        "key": b"u-1042",
        "value": b'{"user": "u-1042", "item": "1", "ts": "x"}',
        "dead_ts": 1700002513.0,
        "key_size": 6,
        "value_size": 43,
    }
    state = hashlib.sha256(b"weights of jump-v000003").hexdigest()
    parent = f"jump-v000002:{hashlib.sha256(b'weights of jump-v000002').hexdigest()[:12]}"
    model_update = {
        "version": f"jump-v000003:{state[:12]}",
        "seq": 3,
        "path": "runs/models/jump-v000003.ckpt",
        "file_sha256": hashlib.sha256(b"checkpoint bytes").hexdigest(),
        "state_sha256": state,
        "vocab_sha256": hashlib.sha256(b"vocabulary").hexdigest(),
        "n_items": 43097,
        "config_sha256": hashlib.sha256(b'{"d": 100}').hexdigest(),
        "parent_version": parent,
        "created_ts": 1700003600.5,
        "sessions_used": 45000,
        "recall20": 0.5123,
        "mrr20": 0.2087,
        "dwell_mae_s": 38.4,
    }
    first_model = {
        **model_update,
        "version": f"jump-v000001:{state[:12]}",
        "seq": 1,
        "path": "runs/models/jump-v000001.ckpt",
        "parent_version": None,
        "dwell_mae_s": None,
    }
    promoted = {
        "run_id": "run-000012-1700003000",
        "started_ts": 1700003000.0,
        "finished_ts": 1700003600.5,
        "duration_s": 600.5,
        "mode": "finetune",
        "trigger": "sessions",
        "result": "promoted",
        "reason": "candidate Recall@20 0.5123 >= serving 0.5051 - margin 0.005",
        "candidate_version": model_update["version"],
        "serving_version": parent,
        "sessions_window": 50000,
        "sessions_train": 45000,
        "sessions_holdout": 5000,
        "clicks_train": 312456,
        "n_items": 43097,
        "new_items": 211,
        "epochs": 3,
        "train_loss": 6.412,
        "candidate_recall20": 0.5123,
        "candidate_mrr20": 0.2087,
        "candidate_dwell_mae_s": 38.4,
        "serving_recall20": 0.5051,
        "serving_mrr20": 0.2049,
        "serving_dwell_mae_s": 39.1,
    }
    rejected = {
        **promoted,
        "run_id": "run-000013-1700007200",
        "mode": "retrain",
        "trigger": "time",
        "result": "rejected",
        "reason": "candidate Recall@20 0.4010 < serving 0.5123 - margin 0.005",
        "candidate_version": None,
        "serving_version": model_update["version"],
        "new_items": 0,
        "candidate_recall20": 0.401,
        "candidate_mrr20": 0.15,
        "candidate_dwell_mae_s": None,
    }
    failed = {
        **promoted,
        "run_id": "run-000014-1700010800",
        "finished_ts": 1700010812.25,
        "duration_s": 12.25,
        "result": "failed",
        "reason": "RuntimeError: CUDA out of memory",
        "candidate_version": None,
        "epochs": 0,
        "train_loss": None,
        "candidate_recall20": None,
        "candidate_mrr20": None,
        "candidate_dwell_mae_s": None,
    }
    initial = {
        **promoted,
        "run_id": "run-000001-1700000000",
        "mode": "initial",
        "serving_version": None,
        "candidate_version": first_model["version"],
        "reason": "no serving model",
        "sessions_window": 5000,
        "sessions_train": 4500,
        "sessions_holdout": 500,
        "new_items": 12050,
        "n_items": 12050,
        "serving_recall20": None,
        "serving_mrr20": None,
        "serving_dwell_mae_s": None,
    }
    for record, kind in (
        (model_update, "model_update"),
        (first_model, "model_update"),
        (promoted, "training_metrics"),
        (rejected, "training_metrics"),
        (failed, "training_metrics"),
        (initial, "training_metrics"),
    ):
        assert list(record) == list(codec.RECORDS[kind][1:]), "samples in wire order"
    return {
        "request": [request, {**request, "position": 0, "items": items[:1], "ts": ts[:1], "event_ts": ts[0]}],
        "prediction": [prediction, unknown],
        "training_log": [
            training_log,
            {**training_log, "close_reason": "idle"},
            {**training_log, "close_reason": "stream_time"},
        ],
        "dead_letter": [
            dead,
            {**dead, "key": None, "value": None, "key_size": None, "value_size": None, "reason": "undecodable"},
            {**dead, "reason": "late", "source_topic": "jump-clicks-rekeyed"},
            {
                **dead,
                "reason": "inference_failed",
                "source_topic": "jump-inference-requests",
                "detail": "inference failed: RuntimeError: CUDA error",
                "value": codec.encode("request", request),
            },
            {
                **dead,
                "reason": "bad_training_log",
                "source_topic": "jump-training-log",
                "key": sid.encode(),
                "detail": "not a schema-1 training_log record",
                "value": b"\xc1garbage",
            },
        ],
        "tick": [{"tick": True, "wall_ts": 1700000005.0}],
        "model_update": [model_update, first_model],
        "training_metrics": [promoted, rejected, failed, initial],
    }


SAMPLES = _samples()


# -- the document itself ----------------------------------------------------------------------------
def test_is_asyncapi_3():
    assert str(DOC["asyncapi"]).startswith("3."), DOC["asyncapi"]
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert DOC["defaultContentType"] == "application/msgpack"


def test_every_reference_resolves():
    refs = list(all_refs(DOC))
    assert refs
    for ref in refs:
        resolve(ref)


def test_servers():
    prod, dev = DOC["servers"]["production"], DOC["servers"]["embedded"]
    assert prod["protocol"] == dev["protocol"] == "kafka"
    assert prod["host"] == "{KAFKA_BOOTSTRAP_SERVERS}"
    for var in re.findall(r"\{(\w+)\}", prod["host"]):
        assert prod["variables"][var]["description"]
    assert dev["host"] == "127.0.0.1:9092"
    assert "Tansu" in dev["title"] and "dev" in dev["title"].lower()
    schemes = DOC["components"]["securitySchemes"]
    assert {deref(s)["type"] for s in prod["security"]} == {"plain", "scramSha256", "scramSha512", "X509"}
    assert all(s["description"] for s in schemes.values())


def test_channel_addresses_are_the_default_topic_names():
    defaults = Settings()
    env_of = {f.name: f.metadata["env"] for f in fields(Settings)}
    assert set(CHANNELS) == set(DOC["channels"])
    for cid, (setting, _) in CHANNELS.items():
        channel = DOC["channels"][cid]
        assert channel["address"] == getattr(defaults, setting), cid
        assert env_of[setting] in channel["description"], f"{cid}: name the variable that renames the topic"
    # every topic setting is documented
    topics = {f.name for f in fields(Settings) if f.name.startswith("topic_")}
    assert topics == {setting for setting, _ in CHANNELS.values()}


def test_channel_messages_carry_the_right_records():
    for cid, (_, kinds) in CHANNELS.items():
        messages = DOC["channels"][cid]["messages"]
        assert {message_kind(m) for m in messages.values()} == kinds, cid


def test_operations_reference_messages_of_their_channel():
    ops = DOC["operations"]
    assert ops
    used = set()
    for name, op in ops.items():
        assert op["action"] in ("send", "receive"), name
        channel_ref = op["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), name
        channel = resolve(channel_ref)
        for m in op.get("messages", []):
            assert m["$ref"].startswith(channel_ref + "/messages/"), (
                f"{name}: {m['$ref']} is not a message of its channel"
            )
            assert deref(m) is deref(channel["messages"][m["$ref"].rsplit("/", 1)[1]])
            used.add(m["$ref"])
    # every message of every channel is sent or received by some operation
    for cid, channel in DOC["channels"].items():
        for mid in channel["messages"]:
            assert f"#/channels/{cid}/messages/{mid}" in used, (cid, mid)


def test_click_content_types_and_keys():
    click = DOC["components"]["messages"]["click"]
    assert click["contentType"] == "application/msgpack"
    assert click["x-content-types"] == ["application/msgpack", "application/json"]
    tick = DOC["components"]["messages"]["tick"]
    assert tick["bindings"]["kafka"]["key"]["const"] == codec.TICK_KEY.decode()
    for m in DOC["components"]["messages"].values():
        key = m["bindings"]["kafka"]["key"]
        assert key["type"] and key["description"], m["name"]


@pytest.mark.parametrize("kind", list(codec.RECORDS))
def test_documented_fields_equal_the_codecs(kind):
    props = schema_of(kind)["properties"]
    assert set(props) == set(codec.RECORDS[kind]), (
        f"{kind}: undocumented {sorted(set(codec.RECORDS[kind]) - set(props))}, "
        f"not written by the codec {sorted(set(props) - set(codec.RECORDS[kind]))}"
    )


@pytest.mark.parametrize("kind", list(codec.RECORDS))
def test_every_field_has_a_type_and_a_one_line_description(kind):
    for name, prop in schema_of(kind)["properties"].items():
        prop = deref(prop)
        assert prop.get("type"), f"{kind}.{name}: no type"
        types = [prop["type"]] if isinstance(prop["type"], str) else prop["type"]
        assert set(types) <= set(_TYPES), f"{kind}.{name}: {types}"
        desc = prop.get("description", "")
        assert isinstance(desc, str) and desc.strip() and "\n" not in desc.strip(), f"{kind}.{name}: description"
        if "array" in types:
            assert deref(prop["items"]).get("type"), f"{kind}.{name}: items need a type"


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_output_records_require_every_field(kind):
    schema = schema_of(kind)
    assert schema["required"] == list(codec.RECORDS[kind]), "same fields, in wire order"
    assert schema["additionalProperties"] is False


def test_click_required_fields():
    schema = schema_of("click")
    optional = set(codec.OPTIONAL_CLICK_FIELDS)
    assert set(schema["required"]) == set(codec.RECORDS["click"]) - optional == {"item", "ts"}
    # one of user/session is required (and must not be null)
    assert sorted(tuple(alt["required"]) for alt in schema["anyOf"]) == [("session",), ("user",)]
    assert {"user", "session"} <= optional
    assert schema["additionalProperties"] is True  # the decoder ignores unknown fields


def test_schema_version_field():
    for kind in codec.RECORDS:
        prop = deref(schema_of(kind)["properties"]["schema"])
        assert prop["type"] == "integer" and prop["const"] == codec.SCHEMA == 1, kind


def test_dead_letter_reasons_equal_the_codecs():
    assert tuple(schema_of("dead_letter")["properties"]["reason"]["enum"]) == codec.REASONS


def test_close_reasons():
    assert schema_of("training_log")["properties"]["close_reason"]["enum"] == ["gap", "stream_time", "idle"]


TRAINING_METRICS_ENUMS = {
    "mode": ["finetune", "retrain", "initial"],
    "trigger": ["sessions", "time"],
    "result": ["promoted", "rejected", "failed"],
}


def test_training_metrics_enums():
    props = schema_of("training_metrics")["properties"]
    for name, values in TRAINING_METRICS_ENUMS.items():
        assert props[name]["type"] == "string" and props[name]["enum"] == values, name
        # the samples exercise every documented value
        assert {s[name] for s in SAMPLES["training_metrics"]} == set(values), name


def test_trainer_operations():
    """The trainer reads the training log and writes model updates and metrics; inference reads the updates."""
    ops = {(op["action"], op["channel"]["$ref"].rsplit("/", 1)[1]): name for name, op in DOC["operations"].items()}
    assert ops[("receive", "trainingLog")] == "receiveTrainingLog"
    assert ops[("send", "modelUpdates")] == "sendModelUpdates"
    assert ops[("receive", "modelUpdates")] == "receiveModelUpdates"
    assert ops[("send", "trainingMetrics")] == "sendTrainingMetrics"
    assert "trainer" in DOC["info"]["description"]
    assert "bad_training_log" in DOC["components"]["messages"]["dead_letter"]["description"]


# -- encoded samples against the documented types ---------------------------------------------------
@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_encoded_samples_match_the_documented_types(kind):
    for sample in SAMPLES[kind]:
        obj = codec.unpack(codec.encode(kind, sample))
        assert list(obj) == ["schema", *sample], "schema comes first on the wire"
        assert check(obj, schema_of(kind)) == [], obj


def test_encoded_click_matches_the_documented_types():
    for raw in (
        codec.encode_click("u-1", "i-9", 1700000000.5, event_id="e-1"),
        codec.encode_click("s-1", "i-9", 1700000000, key_field="session", fmt="json"),
    ):
        obj = json.loads(raw) if raw[:1] == b"{" else codec.unpack(raw)
        assert check(obj, schema_of("click")) == [], obj
        codec.decode_click(raw)


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_the_checker_catches_a_wrongly_typed_field(kind):
    """Guards the checker itself: a map in place of any field (none is an object) is an error."""
    sample = SAMPLES[kind][0]
    for name in codec.RECORDS[kind]:
        bad = codec.unpack(codec.encode(kind, sample))
        bad[name] = {"not": "documented"}
        assert check(bad, schema_of(kind)), f"{kind}.{name}: a map passed the documented type"
    bad = codec.unpack(codec.encode(kind, sample))
    bad["extra"] = 1
    assert check(bad, schema_of(kind))
    del bad["extra"], bad["schema"]
    assert check(bad, schema_of(kind))


def test_the_checker_tells_integers_numbers_and_booleans_apart():
    assert check(True, {"type": "integer"}) and check(1, {"type": "boolean"}) and check(1.5, {"type": "integer"})
    assert not check(1, {"type": "number"}) and check(float("nan"), {"type": "number"})
    assert check("x", {"type": "string", "format": "binary"}) and not check(
        b"x", {"type": ["string", "null"], "format": "binary"}
    )
    assert check(True, {"type": "integer", "const": 1})


def test_documented_keys_and_identities():
    """Outputs are keyed by the session key; the identity travels in the `jump-id` header."""
    pred = SAMPLES["prediction"][0]
    messages = DOC["components"]["messages"]
    assert check(pred["session_key"], messages["prediction"]["bindings"]["kafka"]["key"]) == []
    assert check(pred["session_key"], messages["training_log"]["bindings"]["kafka"]["key"]) == []
    for kind in codec.FORMATTED:
        assert deref(messages[kind]["headers"]) is schema_of("outputHeaders"), kind
        assert messages[kind]["x-content-types"] == ["application/msgpack", "application/json"], kind
        for sample in SAMPLES[kind]:
            for fmt in codec.OUTPUT_FORMATS:
                headers = {k: v.decode() for k, v in codec.output_headers(codec.identity(kind, sample), fmt)}
                assert check(headers, schema_of("outputHeaders")) == [], headers
    assert codec.identity("prediction", pred) == f"{pred['session_id']}/{pred['position']}"
    assert check(b"k", messages["dead_letter"]["bindings"]["kafka"]["key"]) == []
    assert check(None, messages["dead_letter"]["bindings"]["kafka"]["key"]) == []
    for update in SAMPLES["model_update"]:
        assert check(update["version"], messages["model_update"]["bindings"]["kafka"]["key"]) == []
        assert update["version"].endswith(":" + update["state_sha256"][:12])
    for run in SAMPLES["training_metrics"]:
        assert check(run["run_id"], messages["training_metrics"]["bindings"]["kafka"]["key"]) == []


# -- the document's own examples ---------------------------------------------------------------------
def _examples():
    for mid, message in DOC["components"]["messages"].items():
        for ex in message.get("examples", []):
            yield pytest.param(message_kind(message), ex["payload"], id=f"{mid}-{ex['name']}")


@pytest.mark.parametrize("kind, payload", list(_examples()))
def test_examples_are_valid(kind, payload):
    assert check(payload, schema_of(kind)) == []
    if kind == "click":
        for raw in (codec.pack(payload), json.dumps(payload).encode()):
            click = codec.decode_click(raw, now=payload["ts"])
            assert click.ts == payload["ts"]
    else:
        assert set(payload) == set(codec.RECORDS[kind])
        body = {k: v for k, v in payload.items() if k != "schema"}
        assert codec.decode(kind, codec.encode(kind, body)) == payload
    if kind == "model_update":
        assert payload["version"].endswith(":" + payload["state_sha256"][:12])


# -- records written by the sessionizer's core ------------------------------------------------------
def test_sessionizer_records_match_the_documented_types():
    """The real SessionizerCore: requests, a re-keyed click, dead letters and closed sessions."""
    from pipeline.core.sessionizer import Message, SessionizerCore

    t0 = 1700000000.0
    core = SessionizerCore(Settings(), clock=lambda: t0 + 10_000)
    clicks = [
        (b"u1", codec.encode_click("u1", "a", t0)),
        (b"u1", codec.encode_click("u1", "b", t0 + 40, event_id="e2")),
        (b"u1", codec.encode_click("u1", 7, t0 + 3000, fmt="json")),
        (b"not-u2", codec.encode_click("u2", "a", t0 + 1)),  # wrong key: re-keyed
        (None, b"\xc1garbage"),  # undecodable
        (b"u3", codec.pack({"user": "u3", "item": "x", "ts": "yesterday"})),
        (b"u1", codec.encode_click("u1", "c", t0 + 9000)),
    ]  # gap: closes u1's session
    msgs = [Message(0, 1, off, key, value, t0 + off) for off, (key, value) in enumerate(clicks)]
    out = core.process(msgs)
    out = core.flush_all(out)
    assert len(out.requests) == 4 and len(out.rekeyed) == 1 and len(out.dead_letters) == 2
    assert len(out.training_log) == 2
    records = DOC["components"]["messages"]
    for kind, triples in (
        ("request", out.requests),
        ("training_log", out.training_log),
        ("dead_letter", out.dead_letters),
    ):
        for first, key, value in triples:
            obj = codec.decode(kind, value)
            assert check(obj, schema_of(kind)) == [], obj
            key_schema = records[kind]["bindings"]["kafka"]["key"]
            if key_schema.get("format") != "binary":
                key = key.decode()
            assert check(key, key_schema) == [], key
            if kind != "request":  # (headers, key, value): the identity and the format in the headers
                assert dict(first) == {
                    "jump-id": codec.identity(kind, obj).encode(),
                    "content-type": b"application/msgpack",
                }
                if kind == "training_log":
                    assert key == obj["session_key"]
    reasons = {codec.decode("dead_letter", v)["reason"] for _, _, v in out.dead_letters}
    assert reasons == {"undecodable", "wrong_type"}


# -- JSON output (JUMP_OUTPUT_FORMAT=json) against the schemas, with the jsonschema library -----------
def validator(kind: str):
    """A jsonschema validator of components/schemas/<kind>, its references resolved in the document."""
    import jsonschema

    root = {"$ref": f"#/components/schemas/{kind}", "components": DOC["components"]}
    # AsyncAPI 3's default schema format is a superset of JSON Schema draft 07
    jsonschema.Draft7Validator.check_schema(schema_of(kind))
    return jsonschema.Draft7Validator(root)


@pytest.mark.parametrize("kind", codec.FORMATTED)
def test_json_samples_validate_against_the_schemas(kind):
    v = validator(kind)
    for sample in SAMPLES[kind]:
        raw = codec.encode(kind, sample, "json")
        obj = json.loads(raw)  # what a consumer in any language reads
        errors = [e.message for e in v.iter_errors(obj)]
        assert errors == [], (obj, errors)
        assert codec.decode(kind, raw) == codec.decode(kind, codec.encode(kind, sample))  # one dict, either format
        bad = {**obj, "schema": 2}
        assert list(v.iter_errors(bad)), "the validator accepted a wrong schema version"


def test_sessionizer_json_records_validate_against_the_schemas():
    from pipeline.core.sessionizer import Message, SessionizerCore

    t0 = 1700000000.0
    core = SessionizerCore(Settings(output_format="json"), clock=lambda: t0 + 10_000)
    clicks = [
        (b"u1", codec.encode_click("u1", "a", t0)),
        (b"u1", codec.encode_click("u1", "b", t0 + 40)),
        (None, b"\xc1garbage"),
        (b"u\xff", b'{"user": "u\\ud800", "item": 1, "ts": 1e300}'),
    ]
    out = core.flush_all(core.process([Message(0, 0, o, k, v, t0) for o, (k, v) in enumerate(clicks)]))
    assert len(out.training_log) == 1 and len(out.dead_letters) == 2
    for kind, triples in (("training_log", out.training_log), ("dead_letter", out.dead_letters)):
        v = validator(kind)
        for headers, _key, value in triples:
            obj = json.loads(value)
            assert [e.message for e in v.iter_errors(obj)] == []
            assert dict(headers)["content-type"] == b"application/json"
            assert dict(headers)["jump-id"] == codec.identity(kind, obj).encode()
            if kind == "dead_letter":  # the original bytes, base64 in JSON, back as bytes
                assert codec.decode(kind, value)["value"] in {v for _, v in clicks}
