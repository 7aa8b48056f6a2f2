"""The OpenTelemetry specification's environment variables, as a user sets
them, on every export path: spool on and off, grpc and http/protobuf, each
signal. Each test sets variables, runs ``rqa_otel.setup()`` and looks at
what a real receiver got (tests/otlp_receivers.py: a Python HTTP server and
a grpc server, which show headers, paths and compression; rotel's log does
not). docs/settings.md's conformance table names these tests.
"""

from __future__ import annotations

import logging
import os
import re
import time
import urllib.request

import pytest

import rqa_otel
from backends import free_port
from otlp_receivers import ByteCounter, GrpcReceiver, HttpReceiver
from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import SettingsError
from rqa_otel.export.otlp.transport import user_agent

SIGNALS = ("traces", "metrics", "logs")


@pytest.fixture(autouse=True)
def clean_otel_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OTEL_") or name.startswith("RQA_"):
            monkeypatch.delenv(name)


@pytest.fixture
def receivers():
    started = []

    def start(kind: str = "http", **options):
        receiver = (HttpReceiver if kind == "http" else GrpcReceiver)(**options)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


def run_setup(monkeypatch, tmp_path, environ: dict[str, str], spool: bool = False, **overrides):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return rqa_otel.setup(
        overrides={"export.directory": str(tmp_path), "export.spool.enabled": spool, "resources.enabled": False, **overrides},
        set_global=False,
    )


def emit_all(telemetry, message: str = "hello", **extra) -> None:
    with telemetry.tracer.start_as_current_span("unit-of-work"):
        telemetry.meter.create_counter("rqa.test.orders").add(3, {"side": "buy"})
        telemetry.get_logger("env-test").warning(message, extra=extra)
    assert telemetry.force_flush(timeout_s=10)


def all_otlp(**more: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp", **more}


# --- per-signal over generic ------------------------------------------------------


@pytest.mark.parametrize("spool", [False, True], ids=["spool-off", "spool-on"])
def test_http_per_signal_endpoints_headers_and_gzip(receivers, monkeypatch, tmp_path, spool):
    generic, own = receivers(), receivers()
    environ = all_otlp(
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=generic.endpoint,
        OTEL_EXPORTER_OTLP_HEADERS="tenant=generic",
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{own.endpoint}/custom/trace-sink",  # used as it is
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=f"{own.endpoint}/custom/log-sink",
        OTEL_EXPORTER_OTLP_LOGS_HEADERS="tenant=logs",
        OTEL_EXPORTER_OTLP_METRICS_COMPRESSION="none",
        OTEL_SERVICE_NAME="env-service",
        OTEL_RESOURCE_ATTRIBUTES="team=alpha,service.name=loses-to-OTEL_SERVICE_NAME",
    )
    telemetry = run_setup(monkeypatch, tmp_path, environ, spool)
    try:
        emit_all(telemetry)
        own.wait_for("traces", "logs")
        generic.wait_for("metrics")
    finally:
        telemetry.shutdown()
    assert {r.path for r in own.requests} == {"/custom/trace-sink", "/custom/log-sink"}
    assert {r.path for r in generic.requests} == {"/v1/metrics"}, "the generic endpoint gets /v1/<signal>"
    spans, records, points = own.of("traces")[0], own.of("logs")[0], generic.of("metrics")[0]
    assert spans.headers["tenant"] == "generic" and records.headers["tenant"] == "logs"
    assert spans.headers.get("Content-Encoding") == "gzip" and records.headers.get("Content-Encoding") == "gzip"
    assert "Content-Encoding" not in points.headers, "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION=none wins"
    # The specification: an exporter SHOULD say which exporter, language and version it is.
    assert {r.headers["User-Agent"] for r in own.requests + generic.requests} == {user_agent()}
    assert re.fullmatch(r"rqa-otel/\S+ \(Python 3\.\d+\)", user_agent())
    resource = records.decoded().resource_logs[0].resource
    resource_attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert resource_attributes["service.name"] == "env-service" and resource_attributes["team"] == "alpha"
    assert records.decoded().resource_logs[0].scope_logs[0].log_records[0].body.string_value == "hello"


@pytest.mark.parametrize("spool", [False, True], ids=["spool-off", "spool-on"])
def test_only_per_signal_endpoints_still_deliver_everything(receivers, monkeypatch, tmp_path, spool):
    receiver = receivers()
    environ = all_otlp(
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        **{f"OTEL_EXPORTER_OTLP_{s.upper()}_ENDPOINT": f"{receiver.endpoint}/v1/{s}" for s in SIGNALS},
    )
    telemetry = run_setup(monkeypatch, tmp_path, environ, spool)
    try:
        emit_all(telemetry)
        receiver.wait_for(*SIGNALS)
    finally:
        telemetry.shutdown()


@pytest.mark.parametrize("spool", [False, True], ids=["spool-off", "spool-on"])
def test_grpc_per_signal_endpoint_protocol_metadata_and_gzip_on_the_wire(receivers, monkeypatch, tmp_path, spool):
    grpc_generic, grpc_logs, http_traces = receivers("grpc"), receivers("grpc"), receivers()
    counter = ByteCounter(grpc_logs.port)
    environ = all_otlp(
        OTEL_EXPORTER_OTLP_ENDPOINT=grpc_generic.endpoint,
        OTEL_EXPORTER_OTLP_HEADERS="Tenant=generic",
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=f"http://127.0.0.1:{counter.port}",
        OTEL_EXPORTER_OTLP_LOGS_HEADERS="tenant=logs",
        OTEL_EXPORTER_OTLP_LOGS_COMPRESSION="gzip",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{http_traces.endpoint}/v1/traces",
    )
    telemetry = run_setup(monkeypatch, tmp_path, environ, spool)
    big = "x" * 200_000  # compresses to almost nothing
    try:
        emit_all(telemetry, message=big)
        grpc_generic.wait_for("metrics")
        grpc_logs.wait_for("logs")
        http_traces.wait_for("traces")
    finally:
        telemetry.shutdown()
        counter.close()
    assert grpc_generic.of("metrics")[0].headers["tenant"] == "generic"
    assert grpc_generic.of("metrics")[0].headers["user-agent"].startswith(user_agent() + " grpc-python/")
    record = grpc_logs.of("logs")[0]
    assert record.headers["tenant"] == "logs"
    assert record.decoded().resource_logs[0].scope_logs[0].log_records[0].body.string_value == big
    assert counter.sent < 20_000, f"{counter.sent} bytes on the wire for a 200 kB record: not gzipped"
    assert grpc_generic.of("logs") == [] and grpc_generic.of("traces") == []


def test_endpoints_without_a_port_or_a_scheme_are_accepted(caplog):
    from rqa_otel.export.otlp.transport import otlp_url

    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "collector.internal:4318",
        "OTEL_EXPORTER_OTLP_LOGS_INSECURE": "true",
    }
    with caplog.at_level(logging.WARNING, logger="rqa_otel"):
        otlp = load_settings(environ=environ).export.otlp
    assert not caplog.records
    assert otlp_url("traces", otlp.for_signal("traces")) == "https://otlp.example.com/v1/traces"
    assert otlp_url("logs", otlp.for_signal("logs")) == "http://collector.internal:4318"


def test_the_otlp_timeout_bounds_each_request(receivers, monkeypatch):
    from rqa_otel.export.delivery import Outcome, Payload, Value
    from rqa_otel.export.otlp.transport import otlp_transport

    slow = receivers(delay_s=3)
    environ = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": slow.endpoint,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "5000",
        "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "300",  # milliseconds
    }
    otlp = load_settings(environ=environ).export.otlp
    assert otlp.timeout_s == 5.0
    transport = otlp_transport("logs", otlp)
    started = time.monotonic()
    result = transport.send(Payload("logs", b"", Value.NORMAL, 0), 30.0)
    assert time.monotonic() - started < 2.0 and result.outcome is Outcome.RETRY_LATER
    assert otlp_transport("traces", otlp).request_timeout_s == 5.0


def test_delta_temporality_preference_reaches_the_receiver(receivers, monkeypatch, tmp_path):
    receiver = receivers()
    environ = {
        "OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
    }
    telemetry = run_setup(monkeypatch, tmp_path, environ)
    try:
        telemetry.meter.create_counter("rqa.test.orders").add(3)
        telemetry.meter.create_up_down_counter("rqa.test.open").add(1)
        assert telemetry.force_flush(timeout_s=10)
    finally:
        telemetry.shutdown()
    metrics = {
        m.name: m
        for request in receiver.of("metrics")
        for rm in request.decoded().resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert metrics["rqa.test.orders"].sum.aggregation_temporality == 1  # DELTA
    assert metrics["rqa.test.open"].sum.aggregation_temporality == 2  # up-down counters stay CUMULATIVE


@pytest.mark.parametrize("exemplar_filter,expected", [("trace_based", 1), ("always_off", 0)])
def test_the_exemplar_filter(receivers, monkeypatch, tmp_path, exemplar_filter, expected):
    receiver = receivers()
    environ = all_otlp(
        OTEL_LOGS_EXPORTER="none", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_METRICS_EXEMPLAR_FILTER=exemplar_filter,
    )
    telemetry = run_setup(monkeypatch, tmp_path, environ)
    try:
        counter = telemetry.meter.create_counter("rqa.test.sampled")
        with telemetry.tracer.start_as_current_span("sampled"):
            counter.add(1)
        assert telemetry.force_flush(timeout_s=10)
    finally:
        telemetry.shutdown()
    points = [
        point
        for request in receiver.of("metrics")
        for rm in request.decoded().resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == "rqa.test.sampled" for point in m.sum.data_points
    ]
    assert len(points[0].exemplars) == expected


def test_batch_sizes_and_the_metric_interval(receivers, monkeypatch, tmp_path):
    receiver = receivers()
    environ = all_otlp(
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2", OTEL_BSP_SCHEDULE_DELAY="60000", OTEL_BSP_MAX_QUEUE_SIZE="100",
        OTEL_BSP_EXPORT_TIMEOUT="4000",
        OTEL_BLRP_MAX_EXPORT_BATCH_SIZE="3", OTEL_BLRP_SCHEDULE_DELAY="60000", OTEL_BLRP_MAX_QUEUE_SIZE="500",
        OTEL_BLRP_EXPORT_TIMEOUT="3000",
        OTEL_METRIC_EXPORT_INTERVAL="200", OTEL_METRIC_EXPORT_TIMEOUT="2000",
    )
    telemetry = run_setup(monkeypatch, tmp_path, environ)
    try:
        telemetry.meter.create_counter("rqa.test.ticks").add(1)
        receiver.wait_for("metrics", timeout_s=3)  # no flush: the 200 ms interval did it
        for index in range(5):
            telemetry.tracer.start_span(f"span-{index}").end()
        log = telemetry.get_logger("batches")
        for index in range(7):
            log.warning("record %d", index)
        assert telemetry.force_flush(timeout_s=10)
        settings = telemetry.settings
    finally:
        telemetry.shutdown()
    span_batches = [len(r.decoded().resource_spans[0].scope_spans[0].spans) for r in receiver.of("traces")]
    record_batches = [
        sum(len(sl.log_records) for rl in r.decoded().resource_logs for sl in rl.scope_logs) for r in receiver.of("logs")
    ]
    assert sum(span_batches) == 5 and max(span_batches) <= 2
    assert sum(record_batches) == 7 and max(record_batches) <= 3
    assert settings.export.span_batch.schedule_delay_s == 60 and settings.export.span_batch.max_queue_size == 100
    assert settings.export.span_batch.export_timeout_s == 4 and settings.logging.export_timeout_s == 3
    assert settings.logging.queue_size == 500 and settings.logging.flush_interval_s == 60
    assert settings.export.metric_timeout_s == 2 and settings.export.metric_interval_s == 0.2


def test_attribute_limits_on_spans_and_log_records(receivers, monkeypatch, tmp_path):
    receiver = receivers()
    environ = all_otlp(
        OTEL_METRICS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT="10",
        OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT="4",  # rqa.strategy, rqa.stock, rqa.signal, long
        OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT="5",
        OTEL_ATTRIBUTE_COUNT_LIMIT="3",
        OTEL_SPAN_EVENT_COUNT_LIMIT="1",
    )
    telemetry = run_setup(monkeypatch, tmp_path, environ)
    try:
        with telemetry.tracer.start_as_current_span("limited") as span:
            span.set_attributes({"b": 1, "c": 2, "d": 3, "a": "x" * 50})  # the SDK drops the oldest
            span.add_event("first")
            span.add_event("second")
        telemetry.get_logger("limits").warning("limited", extra={"long": "y" * 50, "dropped": "z"})
        assert telemetry.force_flush(timeout_s=10)
    finally:
        telemetry.shutdown()
    exported = receiver.of("traces")[0].decoded().resource_spans[0].scope_spans[0].spans[0]
    assert {a.key: a.value for a in exported.attributes}["a"].string_value == "xxxxx"
    assert len(exported.attributes) == 3 and len(exported.events) == 1
    record = receiver.of("logs")[0].decoded().resource_logs[0].scope_logs[0].log_records[0]
    attributes = {a.key: a.value.string_value for a in record.attributes}
    assert len(record.attributes) == 4 and "dropped" not in attributes
    assert all(len(value) <= 10 for value in attributes.values())
    assert attributes["long"] == "y" * 10


def test_sdk_disabled_sends_nothing(receivers, monkeypatch, tmp_path):
    receiver = receivers()
    environ = all_otlp(
        OTEL_SDK_DISABLED="true", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
    )
    telemetry = run_setup(monkeypatch, tmp_path, environ)
    try:
        emit_all(telemetry)
    finally:
        telemetry.shutdown()
    assert receiver.requests == []


def test_the_sampler_variables(receivers, monkeypatch, tmp_path):
    receiver = receivers()
    environ = {
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0",
    }
    telemetry = run_setup(monkeypatch, tmp_path, environ)
    try:
        with telemetry.tracer.start_as_current_span("never-sampled") as span:
            assert not span.is_recording()
        assert telemetry.force_flush(timeout_s=5)
    finally:
        telemetry.shutdown()
    assert receiver.of("traces") == []


def test_propagators_and_the_sdk_log_level_are_installed(monkeypatch):
    from opentelemetry import propagate

    from rqa_otel.pipeline import install_sdk_globals

    before = propagate.get_global_textmap()
    loggers = {name: logging.getLogger(name).level for name in ("opentelemetry", "rqa_otel")}
    try:
        install_sdk_globals(load_settings(environ={"OTEL_PROPAGATORS": "baggage", "OTEL_LOG_LEVEL": "debug"}))
        assert propagate.get_global_textmap().fields == {"baggage"}
        assert logging.getLogger("opentelemetry").level == logging.DEBUG
    finally:
        propagate.set_global_textmap(before)
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)


# --- exporter lists and prometheus ---------------------------------------------------


def test_comma_separated_exporter_lists(receivers, monkeypatch, tmp_path):
    receiver = receivers()
    environ = {
        "OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "otlp,file",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
    }
    telemetry = run_setup(monkeypatch, tmp_path, environ)
    try:
        with telemetry.tracer.start_as_current_span("to-both"):
            telemetry.get_logger("lists").warning("to both")
        assert telemetry.force_flush(timeout_s=10)
        counts = {(c.signal, c.destination.split(" ")[0]): c.exported for c in telemetry.export_counts()}
    finally:
        telemetry.shutdown()
    assert receiver.of("traces") and receiver.of("logs")
    assert counts[("traces", "console")] == 1 and counts[("traces", "OTLP")] == 1
    assert "to both" in (tmp_path / "logs.jsonl").read_text()  # the file exporter


def test_prometheus_metrics_exporter_serves_metrics(monkeypatch, tmp_path):
    port = free_port()
    environ = {
        "OTEL_METRICS_EXPORTER": "prometheus", "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1", "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
    }
    telemetry = run_setup(monkeypatch, tmp_path, environ)
    try:
        telemetry.meter.create_counter("rqa.test.fills").add(4)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        telemetry.shutdown()
    assert "rqa_test_fills" in text


# --- bad values of standard variables: one warning, the default, setup() works ----------

BAD_VALUES = [
    ("OTEL_METRIC_EXPORT_INTERVAL", "abc", "export.metric_interval_s", 10.0, "milliseconds"),
    ("OTEL_TRACES_EXPORTER", "zipkin", "export.traces", "file", "otlp, console, file, none, influxdb"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "export.otlp.protocol", "grpc", "grpc, http/protobuf"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", "export.otlp.compression", "none", "none, gzip"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "-5", "export.otlp.timeout_s", 10.0, "milliseconds"),
    ("OTEL_EXPORTER_OTLP_INSECURE", "maybe", "export.otlp.insecure", False, "true or false"),
    ("OTEL_EXPORTER_OTLP_INSECURE", "1", "export.otlp.insecure", False, "true or false"),  # only "true" is true
    ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sometimes", "export.otlp.metrics_temporality",
     "cumulative", "cumulative, delta, lowmemory"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "export.span_batch.max_queue_size", 2048, "integer >= 1"),
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "0", "logging.batch_size", 2048, "integer >= 1"),
    ("OTEL_TRACES_SAMPLER", "jaeger_remote", "sdk.traces_sampler", "parentbased_always_on", "traceidratio"),
    ("OTEL_TRACES_SAMPLER_ARG", "2", "sdk.traces_sampler_arg", 1.0, "[0, 1]"),
    ("OTEL_PROPAGATORS", "tracecontext,carrier-pigeon", "sdk.propagators", ("tracecontext", "baggage"), "b3multi"),
    ("OTEL_ATTRIBUTE_COUNT_LIMIT", "many", "sdk.limits.attribute_count", None, "integer >= 0"),
    ("OTEL_LOG_LEVEL", "verbose", "sdk.log_level", "", "debug"),
    ("OTEL_METRICS_EXEMPLAR_FILTER", "sometimes", "sdk.metrics_exemplar_filter", "trace_based", "always_off"),
    ("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign", "resource_attributes", {}, "key=value"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector", "export.otlp.endpoint", "", "http://host:4317"),
]


@pytest.mark.parametrize("variable,value,key,default,accepted", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_a_bad_standard_value_warns_once_and_keeps_the_default(
    monkeypatch, tmp_path, caplog, variable, value, key, default, accepted
):
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="rqa_otel"):
        telemetry = rqa_otel.setup(overrides={"export.directory": str(tmp_path)}, set_global=False)
    telemetry.shutdown()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and variable in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert repr(value) in warnings[0] and accepted in warnings[0] and key in warnings[0]
    assert telemetry.settings.get(key) == default


@pytest.mark.parametrize("variable,value,secret", [
    ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer s3cr3t-token,broken", "s3cr3t-token"),
    ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "ftp://trader:hunter2@collector:4318", "hunter2"),
])
def test_the_warning_never_repeats_a_secret(monkeypatch, caplog, variable, value, secret):
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="rqa_otel"):
        load_settings()
    assert variable in caplog.text and secret not in caplog.text


def test_an_api_key_in_otlp_headers_never_leaves_in_telemetry(receivers, monkeypatch, tmp_path):
    receiver = receivers()
    environ = all_otlp(
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_LOGS_HEADERS="api-key=k3y-0f-the-desk",
    )
    telemetry = run_setup(monkeypatch, tmp_path, environ)
    try:
        emit_all(telemetry, message="connecting with k3y-0f-the-desk")
    finally:
        telemetry.shutdown()
    record = receiver.of("logs")[0]
    assert record.headers["api-key"] == "k3y-0f-the-desk"  # sent where it belongs
    body = record.decoded().resource_logs[0].scope_logs[0].log_records[0].body.string_value
    assert "k3y-0f-the-desk" not in body and "[REDACTED]" in body


def test_the_known_part_of_an_exporter_list_is_kept(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "console,zipkin")
    with caplog.at_level(logging.WARNING, logger="rqa_otel"):
        settings = load_settings()
    assert settings.export.exporters("logs") == ("console",)
    assert "zipkin" in caplog.text


def test_sdk_disabled_with_a_bad_value_warns(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "yes")
    with caplog.at_level(logging.WARNING, logger="rqa_otel"):
        settings = load_settings()
    assert settings.export.traces == "file"
    assert "OTEL_SDK_DISABLED='yes'" in caplog.text and "true or false" in caplog.text


@pytest.mark.parametrize("variable,value", [
    ("RQA_EXPORT__TRACES", "zipkin"), ("RQA_EXPORT__METRIC_INTERVAL_S", "abc"), ("RQA_EXPORT__OTLP__COMPRESSION", "brotli"),
])
def test_rqa_variables_stay_strict(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_settings_files_stay_strict(tmp_path):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("export:\n  traces: otlp,zipkin\n")
    with pytest.raises(SettingsError, match="export.traces"):
        load_settings(settings_file, environ={})
