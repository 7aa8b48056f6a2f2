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
