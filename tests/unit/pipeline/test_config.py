"""pipeline.config: environment parsing, validation, derived settings, Kafka client kwargs, help tables."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields

import pytest

from pipeline.config import Settings, settings_help, settings_markdown

FIELDS = fields(Settings)
ENV = {f.name: f.metadata["env"] for f in FIELDS}
#: a valid non-default raw value per field kind (fields with a closed set of values get their own)
SPECIAL = {
    "security_protocol": ("SASL_SSL", "SASL_SSL"),
    "session_key_field": ("session", "session"),
    "inference_runtime": ("faust", "faust"),
    "sasl_mechanism": ("SCRAM-SHA-512", "SCRAM-SHA-512"),
    "trainer_mode": ("retrain", "retrain"),
    "trainer_window_sessions": ("700", 700),
    "trainer_min_sessions": ("70", 70),
    "trainer_holdout_fraction": ("0.25", 0.25),
    "trainer_margin": ("0.25", 0.25),
    "trainer_keep": ("7", 7),
    "device": ("cuda:1", "cuda:1"),
    "log_level": ("debug", "debug"),
    "log_format": ("json", "json"),
    "producer_acks": ("1", "1"),
    "producer_idempotence": ("false", "false"),
    "auto_offset_reset": ("latest", "latest"),
    "output_format": ("json", "json"),
}
BY_KIND = {int: ("7", 7), float: ("2.5", 2.5), bool: ("no", False), str: ("some-value", "some-value")}


def from_env(**env) -> Settings:
    return Settings.from_env(env=env)


def test_every_field_is_documented_and_typed():
    assert len({f.metadata["env"] for f in FIELDS}) == len(FIELDS), "one variable per field"
    for f in FIELDS:
        assert f.metadata["env"].startswith(("KAFKA_", "JUMP_")), f.name
        assert f.metadata["doc"].strip(), f.name
        assert f.metadata["kind"] in (int, float, bool, str), f.name
        assert type(f.default) is f.metadata["kind"], f"{f.name}: default {f.default!r}"


def test_no_environment_means_the_defaults():
    assert from_env() == Settings()
    s = Settings()
    assert (s.partitions, s.grace_s, s.create_topics, s.topic_clicks) == (4, 60.0, True, "clicks")


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.metadata["env"])
def test_every_field_parses_from_its_variable(f):
    raw, value = SPECIAL.get(f.name) or BY_KIND[f.metadata["kind"]]
    s = from_env(**{f.metadata["env"]: raw})
    got = getattr(s, f.name)
    assert got == value and type(got) is f.metadata["kind"]
    # every other field keeps its default
    assert all(getattr(s, g.name) == g.default for g in FIELDS if g is not f)


def test_a_full_environment():
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9093",
        "JUMP_PARTITIONS": "12",
        "JUMP_SESSION_GAP_S": "1800",
        "JUMP_GRACE_S": "0",
        "JUMP_CREATE_TOPICS": "false",
        "JUMP_TOPIC_CLICKS": "raw-clicks",
        "JUMP_C1": "1e3",
        "JUMP_MAX_WAIT_S": "0",
        "JUMP_SESSION_KEY_FIELD": "user",
        "JUMP_METRICS_PORT": "0",
    }
    s = Settings.from_env(env=env)
    assert s.bootstrap_servers == "k1:9092,k2:9093" and s.partitions == 12
    assert s.session_gap_s == 1800.0 and type(s.session_gap_s) is float and s.grace_s == 0.0
    assert s.create_topics is False and s.topic_clicks == "raw-clicks" and s.c1 == 1000.0
    assert s.max_wait_s == 0.0 and s.session_key_field == "user" and s.metrics_port == 0


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("JUMP_TOP_K", "5")
    monkeypatch.setenv("JUMP_APP_ID", "from-os-environ")
    s = Settings.from_env()
    assert s.top_k == 5 and s.app_id == "from-os-environ"


def test_overrides_win_over_the_environment():
    s = Settings.from_env(env={"JUMP_PARTITIONS": "3", "JUMP_TOP_K": "9"}, partitions=6)
    assert s.partitions == 6 and s.top_k == 9


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "on", " on ", "Yes"])
def test_bool_true(raw):
    assert from_env(JUMP_CREATE_TOPICS=raw).create_topics is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "NO", "off", " off"])
def test_bool_false(raw):
    assert from_env(JUMP_CREATE_TOPICS=raw).create_topics is False


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "t", "-1"])
def test_bool_bad(raw):
    with pytest.raises(ValueError, match="JUMP_CREATE_TOPICS"):
        from_env(JUMP_CREATE_TOPICS=raw)


def test_empty_string_means_default():
    assert Settings.from_env(env={f.metadata["env"]: "" for f in FIELDS}) == Settings()
    assert from_env(JUMP_PARTITIONS="", JUMP_SESSION_GAP_S="", JUMP_CREATE_TOPICS="").partitions == 4


@pytest.mark.parametrize(
    "env, raw",
    [
        ("JUMP_PARTITIONS", "four"),
        ("JUMP_PARTITIONS", "4.0"),
        ("JUMP_PARTITIONS", "0x10"),
        ("JUMP_TOP_K", "1e3"),
        ("JUMP_METRICS_PORT", "port"),
        ("JUMP_SESSION_GAP_S", "1h"),
        ("JUMP_GRACE_S", "sixty"),
        ("JUMP_C1", "2,000"),
    ],
)
def test_unparsable_values_name_the_variable(env, raw):
    with pytest.raises(ValueError, match=env) as e:
        from_env(**{env: raw})
    assert repr(raw) in str(e.value)


@pytest.mark.parametrize(
    "env, raw",
    [
        ("JUMP_PARTITIONS", "0"),
        ("JUMP_PARTITIONS", "-2"),
        ("JUMP_SESSION_GAP_S", "0"),
        ("JUMP_SESSION_GAP_S", "-60"),
        ("JUMP_SESSION_GAP_S", "inf"),
        ("JUMP_SESSION_GAP_S", "nan"),
        ("JUMP_GRACE_S", "-1"),
        ("JUMP_GRACE_S", "nan"),
        ("JUMP_TICK_INTERVAL_S", "0"),
        ("JUMP_TICK_INTERVAL_S", "-5"),
        ("JUMP_MAX_SESSION_CLICKS", "0"),
        ("JUMP_C1", "0"),
        ("JUMP_C1", "-2000"),
        ("JUMP_MAX_BATCH", "0"),
        ("JUMP_MAX_WAIT_S", "-0.01"),
        ("JUMP_TOP_K", "0"),
        ("KAFKA_SECURITY_PROTOCOL", "FOO"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("JUMP_TRAINER_MODE", "online"),
        ("JUMP_TRAINER_MIN_SESSIONS", "1"),
        ("JUMP_TRAINER_MIN_SESSIONS", "60000"),
        ("JUMP_TRAINER_HOLDOUT_FRACTION", "0"),
        ("JUMP_TRAINER_HOLDOUT_FRACTION", "1"),
        ("JUMP_TRAINER_MARGIN", "-0.1"),
        ("JUMP_TRAINER_KEEP", "1"),
        ("JUMP_TRAINER_EPOCHS", "0"),
        ("JUMP_HEALTH_STALE_S", "0"),
        ("JUMP_LOG_FORMAT", "xml"),
        ("JUMP_LOG_FORMAT", "JSON"),
        ("JUMP_PRODUCER_ACKS", "-1"),
        ("JUMP_PRODUCER_ACKS", "leader"),
        ("JUMP_PRODUCER_IDEMPOTENCE", "yes"),
        ("JUMP_AUTO_OFFSET_RESET", "none"),
        ("JUMP_OUTPUT_FORMAT", "avro"),
    ],
)
def test_validate_rejects_bad_values(env, raw):
    with pytest.raises(ValueError, match=env):
        from_env(**{env: raw})


def test_validate_catches_overrides_and_direct_construction():
    with pytest.raises(ValueError, match="JUMP_PARTITIONS"):
        Settings.from_env(env={}, partitions=0)
    s = Settings(session_gap_s=0.0)  # the constructor does not validate ...
    with pytest.raises(ValueError, match="JUMP_SESSION_GAP_S"):
        s.validate()  # ... validate() does
    Settings().validate()


def test_validate_covers_the_paired_checks():
    """Fields checked together with another one are rejected (under the pair's variable today)."""
    for override in (
        {"output_partitions": 0},
        {"context_clicks": 0},
        {"c2": 0.0},
        {"sessionizer_batch": 0},
        {"sessionizer_wait_s": -1.0},
    ):
        with pytest.raises(ValueError):
            Settings.from_env(env={}, **override)


@pytest.mark.parametrize(
    "env, raw",
    [
        ("JUMP_OUTPUT_PARTITIONS", "0"),
        ("JUMP_CONTEXT_CLICKS", "0"),
        ("JUMP_C2", "0"),
        ("JUMP_SESSIONIZER_BATCH", "0"),
        ("JUMP_SESSIONIZER_WAIT_S", "-1"),
    ],
)
def test_validate_names_the_offending_variable(env, raw):
    with pytest.raises(ValueError, match=env):
        from_env(**{env: raw})


@pytest.mark.parametrize(
    "env, raw", [("JUMP_IDLE_CLOSE_S", "nan"), ("JUMP_MAX_FUTURE_S", "-1"), ("JUMP_MAX_FUTURE_S", "nan")]
)
def test_validate_rejects_unchecked_values(env, raw):
    with pytest.raises(ValueError, match=env):
        from_env(**{env: raw})


def test_settings_are_frozen():
    with pytest.raises(FrozenInstanceError):
        Settings().partitions = 2


# -- derived settings ---------------------------------------------------------------------------------------
def test_idle_close_defaults_to_gap_plus_grace():
    assert Settings().idle_close == Settings().session_gap_s + Settings().grace_s == 3660.0
    assert from_env(JUMP_SESSION_GAP_S="1800", JUMP_GRACE_S="30").idle_close == 1830.0
    assert from_env(JUMP_IDLE_CLOSE_S="120").idle_close == 120.0
    assert from_env(JUMP_IDLE_CLOSE_S="0").idle_close == 0.0
    assert from_env(JUMP_IDLE_CLOSE_S="-5", JUMP_GRACE_S="0").idle_close == 3600.0  # any negative: default


@pytest.mark.parametrize(
    "field, expected",
    [("auto", ("session", "user")), ("user", ("user",)), ("session", ("session",)), ("visitor_id", ("visitor_id",))],
)
def test_key_fields(field, expected):
    assert from_env(JUMP_SESSION_KEY_FIELD=field).key_fields == expected


def test_key_fields_match_the_codec_default():
    from pipeline.codec import decode_click

    assert decode_click.__defaults__[0] == Settings().key_fields


# -- Kafka client settings -------------------------------------------------------------------------------------------
SECRETS = {
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    "KAFKA_SASL_USERNAME": "jump",
    "KAFKA_SASL_PASSWORD": "s3cret",
    "KAFKA_SSL_CAFILE": "/etc/ca.pem",
}


def test_kafka_kwargs_plaintext():
    kw = Settings.from_env(env={"KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2", **SECRETS}).kafka_python_kwargs()
    assert kw == {"bootstrap_servers": ["a:1", "b:2"], "security_protocol": "PLAINTEXT"}


def test_kafka_kwargs_sasl_ssl():
    kw = Settings.from_env(env={"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **SECRETS}).kafka_python_kwargs()
    assert kw == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "jump",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/ca.pem",
    }


def test_kafka_kwargs_sasl_mechanism_defaults_to_plain():
    kw = from_env(
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_USERNAME="u", KAFKA_SSL_CAFILE="/etc/ca.pem"
    ).kafka_python_kwargs()
    assert kw["sasl_mechanism"] == "PLAIN" and kw["sasl_plain_username"] == "u"
    assert "ssl_cafile" not in kw  # no TLS on SASL_PLAINTEXT


def test_kafka_kwargs_ssl_with_client_certificate():
    kw = from_env(
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CERTFILE="/c.pem",
        KAFKA_SSL_KEYFILE="/k.pem",
        KAFKA_SASL_USERNAME="ignored",
    ).kafka_python_kwargs()
    assert kw == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "SSL",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
    }


def test_faust_credentials():
    import faust

    assert Settings().faust_broker_credentials() is None
    c = from_env(
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="u",
        KAFKA_SASL_PASSWORD="p",
    ).faust_broker_credentials()
    assert isinstance(c, faust.SASLCredentials) and c.username == "u" and c.password == "p"
    assert c.mechanism.value == "SCRAM-SHA-512" and c.protocol.value == "SASL_PLAINTEXT"
    c = from_env(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="u").faust_broker_credentials()
    assert isinstance(c, faust.SASLCredentials) and c.mechanism.value == "PLAIN" and c.protocol.value == "SASL_SSL"
    assert isinstance(from_env(KAFKA_SECURITY_PROTOCOL="SSL").faust_broker_credentials(), faust.SSLCredentials)


# -- help tables -------------------------------------------------------------------------------------------------------
def test_settings_help_mentions_every_variable():
    text = settings_help()
    lines = text.splitlines()
    assert len(lines) == len(FIELDS)
    for f, line in zip(FIELDS, lines):
        assert line.split()[0] == f.metadata["env"]
        assert f.metadata["doc"] in line
        if f.default != "":
            assert str(f.default) in line


def test_settings_markdown_has_one_row_per_field():
    lines = settings_markdown().splitlines()
    assert lines[0] == "| variable | default | meaning |" and lines[1] == "|---|---|---|"
    rows = lines[2:]
    assert len(rows) == len(FIELDS)
    for f, row in zip(FIELDS, rows):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 3, row
        assert cells[0] == f"`{f.metadata['env']}`" and cells[2] == f.metadata["doc"]
        if f.default != "":
            assert cells[1] == f"`{f.default}`"


def test_readme_documents_every_setting():
    from dataclasses import fields as dc_fields
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    missing = [f.metadata["env"] for f in dc_fields(Settings) if f"`{f.metadata['env']}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


def test_idempotence_needs_acks_all():
    with pytest.raises(ValueError, match="JUMP_PRODUCER_IDEMPOTENCE: true needs JUMP_PRODUCER_ACKS=all"):
        from_env(JUMP_PRODUCER_IDEMPOTENCE="true", JUMP_PRODUCER_ACKS="1")
    assert from_env(JUMP_PRODUCER_IDEMPOTENCE="true").acks == "all"
    assert from_env(JUMP_PRODUCER_ACKS="1").acks == 1 and from_env(JUMP_PRODUCER_ACKS="0").acks == 0
