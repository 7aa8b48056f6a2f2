"""Smoke tests for the back-end harness (tests/backends.py).

They start the real processes and check real round trips, so a broken
harness (or back-end) fails here first.  They must not import rqa_otel.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends import (
    BackendStartError,
    InfluxDB1,
    InfluxQueryError,
    Rotel,
    VictoriaMetrics,
    free_port,
    http_request,
    parse_rotel_debug_output,
)

TESTS_DIR = Path(__file__).resolve().parent


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # non-Linux fallback
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# --------------------------------------------------------------------------
# InfluxDB 1.x
# --------------------------------------------------------------------------


def test_influxdb1_write_and_query(influxdb_v1: InfluxDB1) -> None:
    influxdb_v1.create_database("rqa")
    status, body = http_request(
        "POST",
        f"{influxdb_v1.url}/write?db=rqa&precision=s",
        data="cpu,host=server01,region=us-west value=0.64,count=3i 1700000000\n"
        "cpu,host=server02 value=0.5 1700000001\n",
    )
    assert status == 204, body

    rows = influxdb_v1.points("SELECT * FROM \"cpu\" WHERE \"host\" = 'server01'", db="rqa")
    assert rows == [
        {
            "_measurement": "cpu",
            "time": "2023-11-14T22:13:20Z",
            "count": 3,
            "host": "server01",
            "region": "us-west",
            "value": 0.64,
        }
    ]
    grouped = influxdb_v1.points('SELECT last("value") FROM "cpu" GROUP BY "host"', db="rqa")
    assert {(r["host"], r["last"]) for r in grouped} == {("server01", 0.64), ("server02", 0.5)}

    databases = influxdb_v1.query("SHOW DATABASES")[0]["series"][0]["values"]
    assert ["rqa"] in databases

    with pytest.raises(InfluxQueryError):
        influxdb_v1.query("SELECT FROM nowhere", db="rqa")


# --------------------------------------------------------------------------
# VictoriaMetrics
# --------------------------------------------------------------------------


def test_victoria_metrics_influx_v2_write(victoria_metrics: VictoriaMetrics) -> None:
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    ts = 1_700_000_000_000_000_000
    with InfluxDBClient(url=victoria_metrics.url, token="any-token", org="any-org") as client:
        write_api = client.write_api(write_options=SYNCHRONOUS)
        write_api.write(
            bucket="any-bucket",
            record=[
                Point("rqa_smoke")
                .tag("host", "h1")
                .field("value", 1.5)
                .field("count", 3)
                .time(ts, WritePrecision.NS),
                f"rqa_smoke,host=h2 value=2.5 {ts + 1_000_000_000}",
            ],
        )

    series = victoria_metrics.wait_for_export('{__name__=~"rqa_smoke_.*"}', min_series=3)
    got = {
        (s["metric"]["__name__"], s["metric"]["host"]): (s["values"], s["timestamps"])
        for s in series
    }
    assert got == {
        ("rqa_smoke_value", "h1"): ([1.5], [1_700_000_000_000]),
        ("rqa_smoke_count", "h1"): ([3], [1_700_000_000_000]),
        ("rqa_smoke_value", "h2"): ([2.5], [1_700_000_001_000]),
    }
    result = victoria_metrics.query('rqa_smoke_value{host="h2"}', time_=1_700_000_001)
    assert [r["value"][1] for r in result] == ["2.5"]


# --------------------------------------------------------------------------
# Prometheus / promtool
# --------------------------------------------------------------------------


def test_prometheus_scrapes_prometheus_client(prometheus_factory) -> None:
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    requests = Counter("rqa_smoke_requests", "Smoke requests.", ["route"], registry=registry)
    requests.labels(route="/x").inc(3)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus = prometheus_factory([f"127.0.0.1:{port}"], scrape_interval="1s")
        targets = prometheus.wait_for_target_up(timeout=15)
        assert [t["labels"]["instance"] for t in targets] == [f"127.0.0.1:{port}"]

        result = prometheus.wait_for_query('rqa_smoke_requests_total{route="/x"}')
        assert [(r["metric"]["job"], float(r["value"][1])) for r in result] == [("rqa", 3.0)]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_promtool_accepts_valid_exposition(promtool) -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    registry = CollectorRegistry()
    Counter("rqa_ok", "A counter.", ["a"], registry=registry).labels(a="b").inc()
    Histogram("rqa_latency_seconds", "A histogram.", registry=registry).observe(0.2)
    ok, output = promtool(generate_latest(registry).decode())
    assert ok, output


@pytest.mark.parametrize(
    "text, expected",
    [
        ('# TYPE rqa_bad counter\nrqa_bad{a="b" 1\n', "parsing error"),
        ("# HELP rqa_c A counter.\n# TYPE rqa_c counter\nrqa_c 1\n", "_total"),
    ],
    ids=["syntax-error", "lint-error"],
)
def test_promtool_rejects_broken_exposition(promtool, text: str, expected: str) -> None:
    ok, output = promtool(text)
    assert not ok
    assert expected in output


# --------------------------------------------------------------------------
# Rotel
# --------------------------------------------------------------------------


def _otlp_exporters(protocol: str, rotel: Rotel):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        kw = {"endpoint": rotel.grpc_endpoint, "insecure": True, "timeout": 5}
        return OTLPSpanExporter(**kw), OTLPMetricExporter(**kw), OTLPLogExporter(**kw)

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = rotel.http_endpoint
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=5),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=5),
        OTLPLogExporter(endpoint=f"{base}/v1/logs", timeout=5),
    )


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_rotel_receives_otlp(rotel: Rotel, protocol: str) -> None:
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    span_exporter, metric_exporter, log_exporter = _otlp_exporters(protocol, rotel)
    resource = Resource.create({"service.name": f"rqa-smoke-{protocol}"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    try:
        tracer = tracer_provider.get_tracer("rqa.smoke")
        with tracer.start_as_current_span(
            "smoke-span", attributes={"rqa.protocol": protocol, "rqa.count": 7}
        ) as span:
            span.add_event("smoke-event", {"rqa.step": 1})
            logger_provider.get_logger("rqa.smoke").emit(
                LogRecord(
                    body=f"smoke log via {protocol}",
                    severity_number=SeverityNumber.WARN,
                    severity_text="WARN",
                    attributes={"rqa.protocol": protocol, "rqa.ok": True},
                )
            )
        meter = meter_provider.get_meter("rqa.smoke")
        meter.create_counter("rqa.smoke.requests", unit="1").add(
            3, {"route": "/x", "rqa.protocol": protocol}
        )
    finally:  # shutdown() flushes all three (metrics: exactly one collection)
        tracer_provider.shutdown()
        meter_provider.shutdown()
        logger_provider.shutdown()

    (received_span,) = rotel.wait_for_span("smoke-span")
    assert received_span["attributes"] == {"rqa.protocol": protocol, "rqa.count": 7}
    assert received_span["resource"]["service.name"] == f"rqa-smoke-{protocol}"
    assert received_span["scope"]["name"] == "rqa.smoke"
    assert [(e["name"], e["attributes"]) for e in received_span["events"]] == [
        ("smoke-event", {"rqa.step": 1})
    ]

    (metric,) = rotel.wait_for_metric("rqa.smoke.requests")
    assert metric["type"] == "Sum" and metric["is_monotonic"] and metric["unit"] == "1"
    assert [(p["attributes"], p["value"]) for p in metric["data_points"]] == [
        ({"route": "/x", "rqa.protocol": protocol}, 3)
    ]

    (log,) = rotel.wait_for_log(f"smoke log via {protocol}")
    assert log["attributes"] == {"rqa.protocol": protocol, "rqa.ok": True}
    assert (log["severity_text"], log["severity_number"]) == ("WARN", 13)
    assert log["trace_id"] == received_span["trace_id"]  # emitted inside the span
    assert log["resource"]["service.name"] == f"rqa-smoke-{protocol}"

    # the raw text helper sees the same data
    assert "Name           : smoke-span" in rotel.wait_for("smoke-span", timeout=1)


def test_rotel_wait_for_times_out_with_output_tail(rotel: Rotel) -> None:
    with pytest.raises(AssertionError, match=r"(?s)'never-sent'.*Starting Rotel"):
        rotel.wait_for("never-sent", timeout=0.3)
    with pytest.raises(AssertionError, match="span 'never-sent' not received"):
        rotel.wait_for_span("never-sent", timeout=0.3)
    assert rotel.wait_for(lambda out: "Starting Rotel" in out, timeout=1)
    rotel.clear()
    assert rotel.output() == ""


# A trimmed capture of real `--debug-log-verbosity detailed` output (rotel
# 0.0.1a15), covering multi-line strings, non-string values, scope
# attributes, events, links, exemplars, histograms and non-string bodies.
ROTEL_SAMPLE = """\
2026-11-24T01:04:59.911452Z  INFO Starting Rotel. grpc_endpoint="127.0.0.1:1" http_endpoint="127.0.0.1:2"
ResourceSpans #0
Resource SchemaURL:
Resource attributes:
     -> service.name: Str(edge)
ScopeSpans #0
ScopeSpans SchemaURL: https://s/1
InstrumentationScope edge.t 1.2.3
InstrumentationScope attributes:
     -> sa: Str(sv)
Span #0
    Trace ID       : ff0984fb8c2198deb278e61999426463
    Parent ID      :
    ID             : 3d0aaae4b9be27c5
    Name           : weird: name (x)
    Kind           : SPAN_KIND_SERVER
Start time: 1795482301071935103
End time: 1795482301072109877
    Status code    : STATUS_CODE_ERROR
    Status message : boom
Attributes:
     -> paren: Str(a)b(c)
     -> nl: Str(line1
line2)
     -> empty: Str()
     -> arrow: Str(x -> y: Str(z))
     -> ints: Slice(Int(1), Int(2))
     -> floats: Slice(Double(1), Double(2.5))
     -> ok: Bool(true)
Events:
SpanEvent #0
     -> Name: evt
     -> Timestamp: 1795482301071935200
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> ek: Str(ev)
Links:
SpanLink #0
     -> Trace ID: 95c11a99c11ca302e359eeeda3b3c332
     -> ID: f5a7f8dad5834fca
     -> TraceState:
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> lk: Str(lv)
ResourceMetrics #0
Resource SchemaURL:
Resource attributes:
     -> service.name: Str(edge)
ScopeMetrics #0
ScopeMetrics SchemaURL:
InstrumentationScope edge.m
Metric #0
Descriptor:
     -> Name: ex.counter
     -> Description: desc
     -> Unit: 1
     -> DataType: Sum
     -> IsMonotonic: true
     -> AggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE
NumberDataPoints #0
Data point attributes:
     -> in: Str(span)
     -> code: Int(200)
StartTimestamp: 1795482301072089974
Timestamp: 1795482301073486386
Value: 1.5
Exemplars:
Exemplar #0
     -> Trace ID: ff0984fb8c2198deb278e61999426463
     -> Span ID: 3d0aaae4b9be27c5
     -> Timestamp: 1795482301071978051
     -> Value: 1.5
Metric #1
Descriptor:
     -> Name: lat
     -> Description:
     -> Unit: ms
     -> DataType: Histogram
     -> AggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE
HistogramDataPoints #0
StartTimestamp: 1795482247895917456
Timestamp: 1795482247896152543
Count: 1
Sum: 12.5
Min: 12.5
Max: 12.5
ExplicitBounds #0: 0
ExplicitBounds #1: 5
ExplicitBounds #2: 25
Buckets #0, Count: 0
Buckets #1, Count: 0
Buckets #2, Count: 1
Buckets #3, Count: 0
ResourceLog #0
Resource SchemaURL:
Resource attributes:
     -> service.name: Str(edge)
ScopeLogs #0
ScopeLogs SchemaURL:
InstrumentationScope app
LogRecord #0
ObservedTimestamp: 1795482247903078177
Timestamp: 1795482247903050240
SeverityText: INFO
SeverityNumber: SEVERITY_NUMBER_INFO(9)
Body: Str(second line
with newline)
Attributes:
     -> lk: Str(lv)
    Trace ID       :
    Span ID        :
Flags: 0
LogRecord #1
ObservedTimestamp: 1795482301075156853
Timestamp: 0
SeverityText:
SeverityNumber: SEVERITY_NUMBER_ERROR(17)
EventName: my.event
Body: Map(k:Str(v), n:Int(1), nested:Map(x:Slice(Int(1), Str(two))))
    Trace ID       : ff0984fb8c2198deb278e61999426463
    Span ID        : 3d0aaae4b9be27c5
Flags: 1
2026-11-24T01:05:01.658480Z  INFO Shutdown signal received.
"""


def test_parse_rotel_debug_output_sample() -> None:
    parsed = parse_rotel_debug_output(ROTEL_SAMPLE)

    (span,) = parsed["spans"]
    assert span["name"] == "weird: name (x)"
    assert span["kind"] == "SPAN_KIND_SERVER"
    assert (span["trace_id"], span["span_id"], span["parent_span_id"]) == (
        "ff0984fb8c2198deb278e61999426463",
        "3d0aaae4b9be27c5",
        "",
    )
    assert (span["status_code"], span["status_message"]) == ("STATUS_CODE_ERROR", "boom")
    assert (span["start_time"], span["end_time"]) == (1795482301071935103, 1795482301072109877)
    assert span["attributes"] == {
        "paren": "a)b(c",
        "nl": "line1\nline2",
        "empty": "",
        "arrow": "x -> y: Str(z)",
        "ints": [1, 2],
        "floats": [1, 2.5],
        "ok": True,
    }
    assert span["events"] == [
        {"name": "evt", "time": 1795482301071935200, "attributes": {"ek": "ev"}}
    ]
    assert span["links"] == [
        {
            "trace_id": "95c11a99c11ca302e359eeeda3b3c332",
            "span_id": "f5a7f8dad5834fca",
            "trace_state": "",
            "attributes": {"lk": "lv"},
        }
    ]
    assert span["resource"] == {"service.name": "edge"}
    assert span["scope"] == {
        "name": "edge.t",
        "version": "1.2.3",
        "schema_url": "https://s/1",
        "attributes": {"sa": "sv"},
    }

    counter, hist = parsed["metrics"]
    assert (counter["name"], counter["description"], counter["unit"], counter["type"]) == (
        "ex.counter",
        "desc",
        "1",
        "Sum",
    )
    assert counter["is_monotonic"] is True
    assert counter["temporality"] == "AGGREGATION_TEMPORALITY_CUMULATIVE"
    (point,) = counter["data_points"]
    assert point["attributes"] == {"in": "span", "code": 200}
    assert (point["kind"], point["value"], point["time"]) == ("Number", 1.5, 1795482301073486386)
    assert point["exemplars"][0]["span_id"] == "3d0aaae4b9be27c5"
    (hpoint,) = hist["data_points"]
    assert (hist["type"], hist["unit"], "is_monotonic" in hist) == ("Histogram", "ms", False)
    assert (hpoint["count"], hpoint["sum"], hpoint["min"], hpoint["max"]) == (1, 12.5, 12.5, 12.5)
    assert hpoint["explicit_bounds"] == [0, 5, 25]
    assert hpoint["bucket_counts"] == [0, 0, 1, 0]
    assert hpoint["attributes"] == {}

    first, second = parsed["logs"]
    assert first["body"] == "second line\nwith newline"
    assert first["attributes"] == {"lk": "lv"}
    assert (first["severity_text"], first["severity_number"]) == ("INFO", 9)
    assert (first["trace_id"], first["flags"]) == ("", 0)
    assert first["scope"]["name"] == "app"
    assert second["body"] == {"k": "v", "n": 1, "nested": {"x": [1, "two"]}}
    assert (second["event_name"], second["severity"]) == ("my.event", "SEVERITY_NUMBER_ERROR")
    assert (second["span_id"], second["flags"]) == ("3d0aaae4b9be27c5", 1)


# --------------------------------------------------------------------------
# process handling
# --------------------------------------------------------------------------


def test_stop_terminates_process_and_removes_dir(start_backend) -> None:
    influx = start_backend(InfluxDB1())
    pid, data_dir = influx.process.pid, influx.dir
    assert influx.running and data_dir.is_dir()
    influx.stop()
    assert influx.process.returncode == 0  # graceful SIGTERM shutdown
    assert not _alive(pid)
    assert not data_dir.exists()
    influx.stop()  # idempotent


def test_start_failure_reports_log_tail(start_backend) -> None:
    with pytest.raises(BackendStartError, match="flag provided but not defined"):
        start_backend(VictoriaMetrics(extra_args=["-rqa-no-such-flag"]))


def test_backend_dies_with_sigkilled_parent(require_backend, tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a SIGKILLed test run must not leave back-ends behind.

    A child Python starts Rotel and SIGKILLs itself.  We are its "child
    subreaper" meanwhile, so the orphaned agent is re-parented to us and we
    can reap it (no zombie left for init)."""
    require_backend(Rotel)
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG / PR_SET_CHILD_SUBREAPER are Linux-only")
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    script = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
        "from backends import Rotel\n"
        f"r = Rotel(base_dir={str(tmp_path)!r}).start()\n"
        "print(r.process.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
        pid = int(proc.stdout.split()[0])
        deadline = time.monotonic() + 10
        exited = False
        while not exited and time.monotonic() < deadline:
            try:
                exited = os.waitpid(pid, os.WNOHANG)[0] == pid
            except ChildProcessError:  # not re-parented to us: just watch it
                exited = not _alive(pid)
            if not exited:
                time.sleep(0.05)
        if not exited:  # don't leak it even when the assertion fails
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"rotel-agent {pid} outlived its SIGKILLed parent")
    finally:
        libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)


def test_restart_keeps_port_and_data(influxdb_v1: InfluxDB1) -> None:
    influxdb_v1.create_database("rqa")
    influxdb_v1.write("m,k=v f=1 1700000000000000000", db="rqa")
    url, old_pid = influxdb_v1.url, influxdb_v1.process.pid
    influxdb_v1.restart()
    assert influxdb_v1.process.pid != old_pid and not _alive(old_pid)
    assert influxdb_v1.url == url
    assert [r["f"] for r in influxdb_v1.points('SELECT "f" FROM "m"', db="rqa")] == [1]
