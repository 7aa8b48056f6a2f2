"""The in-process InfluxDB exporters: SDK data -> the Collector's line protocol.

The SDK encoder (rqa_otel.export.influx.sdk_points) reads SDK objects directly; the
conformance-proven conversion (otel2influx) reads OTLP JSON. Each test here
sends the same SDK data both ways -- through the SDK path, and through the
project's OTLP-JSON encoders and otel2influx -- and compares the parsed
line protocol. Then payload limits and value classes, and the transports
against real servers: VictoriaMetrics (/api/v2/write through
influxdb-client) and InfluxDB 1.x with authentication (v1_compatibility).
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any

import pytest
from backends import InfluxDB1, http_request
from opentelemetry.metrics import Observation
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from test_otel2influx_conformance import (
    CASE_FILES,
    assert_same_points,
    expected_key,
    json_fields_of,
    load_case,
    parse_line_protocol,
    parsed_key,
)

from rqa_otel import names
from rqa_otel.export.delivery import Delivery, Outcome, Payload, PayloadMetricExporter, Value, read_ahead
from rqa_otel.export.files.otlp_json import request_to_json_line, spans_to_json_line
from rqa_otel.export.otlp.log_encoding import LogsEncoder
from rqa_otel.export.influx import otel2influx as o2i
from rqa_otel.export.influx.exporter import (
    InfluxEncoder,
    InfluxSchema,
    InfluxV1Transport,
    InfluxV2Transport,
    sdk_exporter,
)
from rqa_otel.export.influx.series_budget import SeriesBudget
from rqa_otel.export.influx.sdk_points import LogEntriesConverter, MetricsConverter, log_records_to_points, spans_to_points

RESOURCE = Resource(
    {"service.name": "strategy-a", names.STRATEGY: "momentum", "host.name": "h1", "process.pid": 4242, "rqa.weights": (0.5, 1.5)}
)
T0 = 1_704_067_200_000_000_000
JSON_FIELDS = {"attributes"}


def parsed(points: list[o2i.Point] | bytes) -> Counter:
    """Points (or line protocol) as InfluxDB reads them: parsed, JSON fields parsed."""
    result = Counter()
    body = points if isinstance(points, bytes) else o2i.to_line_protocol(points)
    for measurement, tags, fields, ts in parse_line_protocol(body):
        typed = tuple(
            sorted((k, kind, json.dumps(json.loads(v), sort_keys=True) if k in JSON_FIELDS else v) for k, (kind, v) in fields.items())
        )
        result[(measurement, tuple(sorted(tags.items())), typed, ts)] += 1
    return result


def assert_same(sdk_points: list[o2i.Point] | bytes, json_points: list[o2i.Point]) -> None:
    sdk, via_json = parsed(sdk_points), parsed(json_points)
    assert sdk == via_json, f"\nonly SDK path: {list(sdk - via_json)}\nonly JSON path: {list(via_json - sdk)}"
    assert sum(sdk.values()) == len(json_points) > 0


# --- same SDK data, both paths -------------------------------------------------------


def _spans() -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("rqa_otel", "1.2.3")
    linked = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")]))
    with tracer.start_as_current_span(
        names.BACKTEST_SPAN, kind=SpanKind.SERVER, start_time=T0,
        attributes={names.STOCK: "000001.SZ", "n": 3, "x": 1.5, "ok": True, "tags": ("a", "b"), "span.name": "attr"},
        links=[Link(linked, {"why": "parent run"}), Link(SpanContext(0x9, 0x8, False))],
    ) as run:
        run.add_event(names.TRADE_EVENT, {names.TRADE_PRICE: 10.5, names.TRADE_QUANTITY: 100, "big": 2**70}, timestamp=T0 + 5)
        run.add_event("", timestamp=T0 + 6)  # no name, no attributes: dropped, as upstream
        with tracer.start_as_current_span(names.ALERT_SPAN, start_time=T0 + 10, attributes={names.ALERT_NAME: "x"}) as alert:
            alert.set_status(Status(StatusCode.ERROR, 'broker "down"'))
            alert.end(end_time=T0 + 20)
        run.end(end_time=T0 + 100)
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize("dimensions", [o2i.DEFAULT_SPAN_DIMENSIONS, ("service.name", names.STRATEGY, "span.name")])
def test_spans_sdk_path_equals_otlp_json_path(dimensions) -> None:
    spans = _spans()
    dims = o2i.dimensions_set(dimensions, "span_dimensions")
    sdk_points = spans_to_points(spans, dims)
    assert_same(sdk_points, o2i.traces_to_points(json.loads(spans_to_json_line(spans)), dimensions))
    assert {p.measurement for p in sdk_points} == {"spans", "logs", "span-links"}


def _metrics_data(schema_data_points: int = 3):
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("rqa_otel", "1.2.3")
    trades = meter.create_counter(names.TRADES_COUNTER)
    positions = meter.create_up_down_counter("positions")
    notional = meter.create_histogram(names.TRADE_NOTIONAL_HISTOGRAM, explicit_bucket_boundaries_advisory=[10.0, 1e6, 1e22])
    meter.create_observable_gauge("cash", [lambda options: [
        Observation(5.25, {"ccy": "CNY"}), Observation(float("nan"), {"ccy": "USD"}),
    ]])
    tracer = TracerProvider().get_tracer("t")
    for n in range(schema_data_points):
        attributes = {names.STOCK: f"00000{n}.SZ", names.TRADE_SIDE: "buy", "lot": n}
        trades.add(1, attributes)
        positions.add(-n, attributes)
        with tracer.start_as_current_span("trade"):  # sampled: the histogram keeps an exemplar
            notional.record(1000.5 * (n + 1), attributes)
    return reader.get_metrics_data()


@pytest.mark.parametrize("schema", o2i.METRICS_SCHEMAS)
def test_metrics_sdk_path_equals_otlp_json_path(schema) -> None:
    data = _metrics_data()
    converter = MetricsConverter(schema)
    lines = converter.lines(data)  # the exporter's path: number lines without Point objects
    assert_same(o2i.encode_lines(lines), o2i.metrics_to_points(json.loads(request_to_json_line(encode_metrics(data))), schema))
    assert converter.lines(data) == lines  # the per-series caches change nothing
    if schema == o2i.SCHEMA_TELEGRAF_PROMETHEUS_V1:
        assert any(line.startswith(names.TRADE_NOTIONAL_HISTOGRAM + "_exemplar,") for line in lines)


@pytest.mark.parametrize("schema", o2i.METRICS_SCHEMAS)
def test_metric_line_caches_follow_start_time_timestamp_and_value(schema) -> None:
    """The hot path keeps, per series, the line up to the value and the last
    timestamp's text; a counter reset (new start), a new timestamp, a start
    of 0, a NaN or a bool must still give the general writer's lines."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality, Gauge, Metric, MetricsData, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    )
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    series = [{names.STOCK: f"00000{n}.SZ"} for n in range(3)]  # the same objects at every collection
    resource, scope = Resource({"service.name": "svc"}), InstrumentationScope("s", "1")
    converter = MetricsConverter(schema)
    collections = [(T0, T0 + 1, 1), (T0, T0 + 2, 2.5), (T0 + 5, T0 + 6, float("nan")), (0, T0 + 7, True), (T0 + 5, T0 + 7, 7)]
    for start, ts, value in collections:
        def points(offset: int) -> list:
            return [NumberDataPoint(a, start, ts + n // 2, value if n == 1 else value + offset + n, None) for n, a in enumerate(series)]

        metrics = [
            Metric("count", "", "", Sum(points(0), AggregationTemporality.CUMULATIVE, True)),
            Metric("level", "", "", Gauge(points(10))),
        ]
        data = MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, metrics, "")], "")])
        general: list[o2i.Point] = []
        for metric in metrics:
            for point in metric.data.data_points:
                tags = {"service.name": "svc", o2i.OTEL_LIBRARY_NAME: "s", o2i.OTEL_LIBRARY_VERSION: "1", **point.attributes}
                o2i.number_point(
                    general.append, schema == o2i.SCHEMA_TELEGRAF_PROMETHEUS_V2, metric.name, metric.name == "count",
                    tags, point.start_time_unix_nano, point.time_unix_nano, point.value,
                )
        assert converter.lines(data) == o2i.line_strings(general)


def _value(any_value: dict) -> Any:
    (kind, value), = any_value.items()
    return {"intValue": int, "doubleValue": float}.get(kind, lambda v: v)(value)


def _attributes(holder: dict) -> dict[str, Any]:
    return {a["key"]: _value(a["value"]) for a in holder.get("attributes", [])}


def _sdk_metrics(request: dict):
    """An OTLP-JSON metrics request (the conformance cases' inputs) as the
    SDK's MetricsData, built from the SDK's own data classes."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, MetricsData, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    )
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    def number(point: dict) -> NumberDataPoint:
        value = point["asDouble"] if "asDouble" in point else int(point["asInt"])
        return NumberDataPoint(_attributes(point), int(point.get("startTimeUnixNano", 0)), int(point["timeUnixNano"]), value, [])

    def metric(m: dict) -> Metric:
        if "gauge" in m:
            data = Gauge([number(p) for p in m["gauge"]["dataPoints"]])
        elif "sum" in m:
            s = m["sum"]
            data = Sum([number(p) for p in s["dataPoints"]], AggregationTemporality(s.get("aggregationTemporality", 0)),
                       s.get("isMonotonic", False))
        else:
            h = m["histogram"]
            data = Histogram(
                [HistogramDataPoint(_attributes(p), int(p.get("startTimeUnixNano", 0)), int(p["timeUnixNano"]), int(p["count"]),
                                    p.get("sum"), [int(c) for c in p["bucketCounts"]], p["explicitBounds"], p.get("min"), p.get("max"), [])
                 for p in h["dataPoints"]],
                AggregationTemporality(h.get("aggregationTemporality", 0)),
            )
        return Metric(m["name"], m.get("description", ""), "", data)

    def _scope(scope: dict) -> InstrumentationScope:
        return InstrumentationScope(scope.get("name", ""), scope.get("version"), None, _attributes(scope))

    return MetricsData([
        ResourceMetrics(Resource(_attributes(rm.get("resource", {}))), [
            ScopeMetrics(_scope(sm.get("scope", {})), [metric(m) for m in sm["metrics"]], "")
            for sm in rm["scopeMetrics"]
        ], "")
        for rm in request["resourceMetrics"]
    ])


METRIC_CASES = [p for p in CASE_FILES if load_case(p)["schema"] in o2i.METRICS_SCHEMAS and "summary" not in p.stem]


@pytest.mark.parametrize("path", METRIC_CASES, ids=lambda p: p.stem)
def test_metric_conformance_cases_through_the_sdk_path(path) -> None:
    """The upstream cases (summaries aside: the Python SDK has no summary
    type) as SDK data, through the exporter's own path, give the points the
    Collector writes."""
    case = load_case(path)
    lines = MetricsConverter(case["schema"]).lines(_sdk_metrics(case["input"]))
    json_fields = json_fields_of(case)
    got = [parsed_key(p, json_fields) for p in parse_line_protocol(o2i.encode_lines(lines))]
    assert_same_points(got, [expected_key(p) for p in case["expected"]])


ENTRIES = [
    (T0 + 1, logging.INFO, names.TRADE_EVENT, "buy 100 000001.SZ @ 10.5",
     {names.STRATEGY: "momentum", names.STOCK: "000001.SZ", names.TRADE_PRICE: 10.5, names.TRADE_QUANTITY: 100},
     0xABC, 0xDEF, 1),
    (T0 + 2, logging.DEBUG, "feed", 'tick "quoted"\nnext line', {"levels": [1, 2], "m": {"a": 1}, "big": 2**70, "obj": object.__name__}, 0, 0, 0),
    (T0 + 3, logging.WARNING, "risk", "limit", {"service.name": "override", "nan": float("nan")}, 0, 0, 0),
    (T0 + 4, logging.ERROR, "x", "", {}, 0, 0, 0),
]


@pytest.mark.parametrize("dimensions", [o2i.DEFAULT_LOG_RECORD_DIMENSIONS, ("service.name", names.STRATEGY, names.STOCK)])
def test_log_entries_sdk_path_equals_otlp_json_path(dimensions) -> None:
    resource = dict(RESOURCE.attributes)
    observed = T0 + 99
    sdk_points = LogEntriesConverter(resource, o2i.dimensions_set(dimensions, "d")).convert(ENTRIES, observed)
    request = json.loads(LogsEncoder(resource).encode_json(ENTRIES, observed))
    assert_same(sdk_points, o2i.logs_to_points(request, dimensions))


def test_sdk_log_records_equal_otlp_json_path() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    from opentelemetry._logs import LogRecord, SeverityNumber

    logger = provider.get_logger("sdk-records", "1.0")
    logger.emit(LogRecord(timestamp=T0, observed_timestamp=T0 + 1, severity_number=SeverityNumber.WARN,
                          severity_text="WARN", body="careful now", attributes={"qty": 3, "side": "sell"}))
    logger.emit(LogRecord(timestamp=T0 + 2, severity_number=SeverityNumber.INFO, body={"body": "as a map", "n": [1, 2]}))
    records = list(exporter.get_finished_logs())
    dims = o2i.dimensions_set(o2i.DEFAULT_LOG_RECORD_DIMENSIONS, "d")
    assert_same(log_records_to_points(records, dims), o2i.logs_to_points(json.loads(request_to_json_line(encode_logs(records)))))


# --- payloads -----------------------------------------------------------------------


def test_payloads_respect_line_and_byte_limits_and_value_classes() -> None:
    entries = [(T0 + n, logging.INFO, "feed", f"tick {n}", {}, 0, 0, 0) for n in range(25)]
    entries += [(T0 + 100 + n, logging.INFO, names.TRADE_EVENT, f"trade {n}", {}, 0, 0, 0) for n in range(4)]
    entries.append((T0 + 200, logging.ERROR, "risk", "breach", {}, 0, 0, 0))
    encoder = InfluxEncoder(InfluxSchema(max_lines=10, max_bytes=400), {"service.name": "s"})
    payloads = encoder.log_entries(entries, T0)
    assert [p.value for p in payloads][:1] == [Value.CRITICAL]  # highest value first
    by_value = Counter()
    for payload in payloads:
        assert payload.items == payload.body.count(b"\n") <= 10
        assert len(payload.body) <= 400
        by_value[payload.value] += payload.items
    assert by_value == {Value.LOW: 25, Value.CRITICAL: 4, Value.NORMAL: 1}
    lines = b"".join(p.body for p in payloads).splitlines()
    assert len(lines) == len(set(lines)) == 30
    # Cut between lines, never inside one: a string field may hold a raw newline.
    multiline = [(T0 + n, logging.WARNING, "x", "line one\nline two " * 10, {}, 0, 0, 0) for n in range(6)]
    small = InfluxEncoder(InfluxSchema(max_bytes=300), {"service.name": "s"}).log_entries(multiline, T0)
    assert len(small) == 6 and all(len(parse_line_protocol(p.body)) == p.items == 1 for p in small)


def test_alert_spans_and_trade_metrics_are_critical() -> None:
    encoder = InfluxEncoder()
    values = {p.value: p.body for p in encoder.spans(_spans())}
    assert names.ALERT_SPAN.encode() in values[Value.CRITICAL] and names.ALERT_SPAN.encode() not in values[Value.NORMAL]
    assert {p.value for p in encoder.metrics(_metrics_data())} == {Value.CRITICAL}


def test_read_ahead_keeps_order_bounds_memory_and_raises_in_place() -> None:
    """Payloads encoded on a helper thread while the caller sends: the same
    payloads in order, the encoder at most two ahead of the sender, an
    encoding error raised after the payloads before it, no helper left
    behind when the sender stops early."""
    payloads = InfluxEncoder(InfluxSchema(max_lines=2)).metrics(_metrics_data(schema_data_points=6))
    pulled = []

    def encode(fail_after: int | None = None):
        for n, payload in enumerate(payloads):
            if n == fail_after:
                raise ValueError("metric 'x': metric has no timestamp")
            pulled.append(payload)
            yield payload

    received = []
    for payload in read_ahead(encode()):
        time.sleep(0.01)  # a slow server: the encoder would run ahead if nothing held it
        assert len(pulled) <= len(received) + 3  # this one, one ready, one waiting: never more
        received.append(payload)
    assert received == payloads and len(payloads) > 4

    received.clear()
    with pytest.raises(ValueError, match="no timestamp"):
        for payload in read_ahead(encode(fail_after=3)):
            received.append(payload)
    assert received == payloads[:3]

    stream = read_ahead(encode())
    assert next(stream) == payloads[0]
    stream.close()  # the sender gave up: the helper stops before the next export uses the encoder
    assert not [t for t in threading.enumerate() if t.name == "rqa-otel-encode-ahead"]


def test_bodies_gzipped_ahead_are_bounded_and_belong_to_their_payload() -> None:
    """A transport's ``prepare`` (read_ahead's helper thread) compresses
    ahead; only the two latest are kept, and a payload that was not
    prepared (or no longer is) is compressed at its send."""
    import gzip

    from rqa_otel.export.influx.exporter import _Gzipped

    payloads = [Payload("metrics", f"m v={n}i 1\n".encode() * 50, Value.NORMAL, 50) for n in range(4)]
    gzipped = _Gzipped()
    for payload in payloads[:3]:
        gzipped.prepare(payload)
    assert len(gzipped._ready) == 2  # the first was dropped: the spool may have persisted it instead
    assert [gzip.decompress(gzipped.body(p)) for p in payloads] == [p.body for p in payloads]
    assert not gzipped._ready


# --- transports against real servers ---------------------------------------------------


def test_v2_transport_writes_sdk_metrics_to_victoria_metrics(victoria_metrics) -> None:
    """A collection of several batches through influxdb-client's
    /api/v2/write, gzip-compressed: every series arrives, tagged."""
    data = _metrics_data(schema_data_points=60)
    transport = InfluxV2Transport(victoria_metrics.url, org="rqa", bucket="telemetry")
    delivery = Delivery("metrics", transport, budget_s=10.0)
    encoder = InfluxEncoder(InfluxSchema(max_lines=25))
    # Streamed: the same payloads (fresh encoders: increments depend on what an encoder has seen).
    assert list(InfluxEncoder(InfluxSchema(max_lines=25)).metric_stream(data)) == encoder.metrics(data)
    encoder = InfluxEncoder(InfluxSchema(max_lines=25))
    exporter = PayloadMetricExporter(encoder.metric_stream, delivery)  # sent while the next is encoded
    assert exporter.export(data).name == "SUCCESS"
    # The series budget's default: sums as increments, in the `gauge` field.
    series = victoria_metrics.wait_for_export('{__name__=~"rqa.trades_gauge"}', min_series=60)
    labels = {s["metric"][names.STOCK] for s in series}
    assert len(labels) == 60 and series[0]["metric"]["service.name"] == "strategy-a"
    assert delivery.counts.exported == len(MetricsConverter(budget=SeriesBudget()).lines(data)) and delivery.counts.failed == 0
    exporter.shutdown()


def test_sdk_log_record_exporter_into_influxdb_1x(influxdb_v1) -> None:
    """The SDK's own log pipeline (LoggerProvider + BatchLogRecordProcessor)
    with the InfluxDB LogRecordExporter, for code that does not use setup()."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    influxdb_v1.create_database("rqa")
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(BatchLogRecordProcessor(sdk_exporter("logs", InfluxV1Transport(influxdb_v1.url, db="rqa"))))
    provider.get_logger("rqa.trade").emit(LogRecord(timestamp=T0, severity_number=SeverityNumber.INFO, body="buy 100",
                                                   attributes={names.STOCK: "000001.SZ"}))
    provider.shutdown()
    [row] = influxdb_v1.points('SELECT * FROM "logs"', db="rqa", epoch="ns")
    assert (row["time"], row["body"], row["service.name"]) == (T0, "buy 100", "strategy-a")
    assert json.loads(row["attributes"])[names.STOCK] == "000001.SZ"
    with pytest.raises(ValueError, match="expected traces, metrics or logs"):
        sdk_exporter("profiles", InfluxV1Transport(influxdb_v1.url, db="rqa"))


class AuthInfluxDB1(InfluxDB1):
    """InfluxDB 1.x with authentication on and an admin user."""

    def _prepare(self, binary: str) -> list[str]:
        command = super()._prepare(binary)
        config = self.dir / "influxdb.conf"
        config.write_text(config.read_text().replace("auth-enabled = false", "auth-enabled = true"))
        return command

    def _is_ready(self) -> bool:
        status, _ = http_request("GET", f"{self.url}/ping", timeout=1)
        return status == 204

    def q(self, influxql: str, **params: str) -> dict:
        body = urllib.parse.urlencode({"q": influxql, **params}).encode()
        with urllib.request.urlopen(f"{self.url}/query?u=admin&p=s3cret", data=body, timeout=10) as response:
            return json.loads(response.read())


def create_admin(influx: AuthInfluxDB1) -> None:
    """The first user may be created without credentials."""
    status, _ = http_request("POST", f"{influx.url}/query", data=urllib.parse.urlencode(
        {"q": "CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES"}),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200


def test_v1_transport_basic_auth_and_permanent_failures(start_backend) -> None:
    influx = start_backend(AuthInfluxDB1())
    create_admin(influx)
    influx.q('CREATE DATABASE "rqa"')
    encoder = InfluxEncoder(resource_attributes=dict(RESOURCE.attributes))
    payloads = encoder.log_entries(ENTRIES[:1], T0 + 99)

    good = InfluxV1Transport(influx.url, db="rqa", username="admin", password="s3cret")
    assert [good.send(p, 5.0).outcome for p in payloads] == [Outcome.DELIVERED]
    rows = influx.q('SELECT "body", "attributes" FROM "logs"', db="rqa", epoch="ns")["results"][0]["series"][0]["values"]
    assert rows == [[T0 + 1, "buy 100 000001.SZ @ 10.5", rows[0][2]]]
    assert json.loads(rows[0][2])[names.STOCK] == "000001.SZ"

    wrong = InfluxV1Transport(influx.url, db="rqa", username="admin", password="wrong").send(payloads[0], 5.0)
    assert wrong.outcome is Outcome.REJECTED and "401" in wrong.detail and "wrong" not in wrong.detail
    missing = InfluxV1Transport(influx.url, db="nope", username="admin", password="s3cret").send(payloads[0], 5.0)
    assert missing.outcome is Outcome.REJECTED and "database not found" in missing.detail
    influx.stop()
    down = good.send(payloads[0], 2.0)
    assert down.outcome is Outcome.RETRY_LATER and "InfluxDB 1.x" in down.detail
    assert "s3cret" not in repr(good)


class _Answers(http.server.BaseHTTPRequestHandler):
    answers: list[tuple[int, dict[str, str]]] = []
    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), body))
        status, headers = self.answers.pop(0)
        time.sleep(float(headers.pop("X-Delay", 0)))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b'{"error":"x"}')

    def log_message(self, *args: Any) -> None:
        pass


def test_status_classification_and_gzip_on_the_wire() -> None:
    """A scripted HTTP server (a fake: no real InfluxDB answers 429 or 503
    on demand) checks what the v2 transport puts on the wire and how each
    answer is classified."""
    import gzip

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _Answers.answers[:] = [(204, {"X-Delay": "0.3"}), (429, {"Retry-After": "7"}), (503, {}), (400, {}), (413, {})]
        transport = InfluxV2Transport(f"http://127.0.0.1:{server.server_address[1]}", org="o", bucket="b", token="tok")
        payload = Payload("logs", b"m f=1i 1\n", Value.NORMAL, 1)
        results = [transport.send(payload, 5.0) for _ in range(5)]
        assert [r.outcome for r in results] == [
            Outcome.DELIVERED, Outcome.RETRY_LATER, Outcome.RETRY_LATER, Outcome.REJECTED, Outcome.REJECTED,
        ]
        assert results[1].retry_after_s == 7.0 and "HTTP 400" in results[3].detail
        path, headers, body = _Answers.received[0]
        assert path.startswith("/api/v2/write?") and "bucket=b" in path and "precision=ns" in path
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == payload.body
        assert headers["Authorization"] == "Token tok"

    finally:
        server.shutdown()
