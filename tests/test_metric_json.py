"""The file exporter's direct metric encoding equals the SDK's protobuf
encoding rendered by protobuf's own JSON mapping (as for spans)."""

from __future__ import annotations

import json

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from rqa_otel.export.files.otlp_json import metrics_to_json_line, request_to_json_line


def _collect(views=()) -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], views=list(views),
        resource=Resource.create({"service.name": "svc", "n": 3}, schema_url="https://opentelemetry.io/schemas/1.21.0"),
    )
    meter = provider.get_meter("scope.a", "1.2", schema_url="https://example/schema", attributes={"lib": "x"})
    other = provider.get_meter("scope.b")
    counter = meter.create_counter("rqa.trades", unit="{trade}", description="fills")
    for symbol in ("600000.SH", "贵州"):
        counter.add(3, {"rqa.symbol": symbol, "rqa.side": "buy", "b": True, "f": 1.5, "l": [1, 2]})
    meter.create_up_down_counter("cash").add(-2.5)
    meter.create_counter("zero").add(0)
    histogram = other.create_histogram("notional", unit="CNY")
    for value in (0.0, 1.0, 250.0, 1e9):
        histogram.record(value, {"k": "v"})
    other.create_histogram("silent")  # no point: encode_metrics sets nothing
    other.create_observable_gauge("value", [lambda options: [Observation(0.25, {"a": 1}), Observation(7)]])
    return reader.get_metrics_data()


def test_direct_metric_json_matches_the_protobuf_path():
    data = _collect()
    expected = json.loads(request_to_json_line(encode_metrics(data)))
    assert json.loads(metrics_to_json_line(data)) == expected
    assert len(MessageToDict(encode_metrics(data))["resourceMetrics"][0]["scopeMetrics"]) == 2  # it really holds data


def test_exponential_histograms_take_the_protobuf_path_unchanged():
    data = _collect([View(instrument_name="notional", aggregation=ExponentialBucketHistogramAggregation())])
    assert metrics_to_json_line(data) == request_to_json_line(encode_metrics(data))
    assert b"exponentialHistogram" in metrics_to_json_line(data)


def test_exemplars_are_encoded_directly_as_the_protobuf_path_does(monkeypatch):
    """Counters recorded inside a sampled span carry exemplars (the demo's
    alerts and trading errors): they no longer send the whole collection
    through protobuf."""
    from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOnExemplarFilter
    from opentelemetry.sdk.trace import TracerProvider

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOnExemplarFilter())
    meter = provider.get_meter("scope.a")
    alerts = meter.create_counter("rqa.alerts")
    cash = meter.create_up_down_counter("cash")
    histogram = meter.create_histogram("notional", unit="CNY")
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("run"):
        alerts.add(1, {"rqa.alert": "quota_breach", "extra": "x"})
        cash.add(-2.5, {"k": "v"})
        histogram.record(250.0, {"k": "v"})
        histogram.record(0, {"k": "v"})
    alerts.add(2, {"rqa.alert": "other"})  # outside a span: an exemplar without ids
    data = reader.get_metrics_data()
    expected = json.loads(request_to_json_line(encode_metrics(data)))
    import rqa_otel.export.files.otlp_json as otlp_json

    def no_fallback(request):
        raise AssertionError("the direct encoding fell back to protobuf")

    monkeypatch.setattr(otlp_json, "request_to_json_line", no_fallback)
    line = metrics_to_json_line(data)
    assert json.loads(line) == expected
    # It really holds exemplars, with and without span ids.
    exemplars = [e for m in json.loads(line)["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                 for body in (m.get("sum") or m.get("histogram"),) for p in body["dataPoints"] for e in p.get("exemplars", [])]
    assert any("spanId" in e for e in exemplars) and any("spanId" not in e for e in exemplars)


def test_the_line_is_exactly_what_json_dumps_writes_for_it():
    """The lines are written as text; they must be the bytes json.dumps
    (compact, non-ASCII kept) gives for the same document: escapes, non-ASCII,
    special doubles, big and negative integers, booleans, arrays."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("s")
    odd = {'quote"back\\slash': "line\nbreak\ttab\x01", "贵州": "茅台", "i": -(1 << 62), "huge": 1 << 70,
           "f": 1e-7, "nan": float("nan"), "t": True, "no": False, "l": ["a", 1, 2.5, True], "e": ""}
    meter.create_counter("c", unit="{x}", description='say "hi"\n').add(5, odd)
    meter.create_up_down_counter("u").add(-1.25, {"k": "v"})
    meter.create_observable_gauge("g", [lambda options: [  # the SDK drops non-finite observations
        Observation(0.1 + 0.2, {"w": "x"}), Observation(1e300, {"w": "big"}), Observation(3)]])
    meter.create_histogram("h").record(2.5, {"k": "v"})
    line = metrics_to_json_line(reader.get_metrics_data())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line == (json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    assert '"doubleValue":NaN' in line.decode() and '"asDouble":0.30000000000000004' in line.decode()
    assert '"key":"quote\\"back\\\\slash"' in line.decode() and "茅台" in line.decode()
