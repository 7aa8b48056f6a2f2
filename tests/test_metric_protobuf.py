"""The OTLP exporter's direct metric encoding writes the very bytes the
SDK exporters' encoder (protobuf) writes; what it does not write (exemplars,
exponential histograms, other attribute types) is left to that encoder."""

from __future__ import annotations

import math

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from rqa_otel.export.otlp.encoding import encode_metrics as payloads
from rqa_otel.export.otlp.metric_encoding import encode_request


def _collect(views=(), resource_attributes=None, point_attributes=None, **provider_options) -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], views=list(views),
        resource=Resource.create(
            resource_attributes or {"service.name": "svc", "n": 3, "": "empty key", "e": "", "neg": -7},
            schema_url="https://opentelemetry.io/schemas/1.21.0",
        ),
        **provider_options,
    )
    meter = provider.get_meter("scope.a", "1.2", schema_url="https://example/schema", attributes={"lib": "x", "on": False})
    other = provider.get_meter("scope.b")
    counter = meter.create_counter("rqa.trades", unit="{trade}", description="fills")
    for symbol in ("600000.SH", "贵州"):
        counter.add(3, point_attributes or {"rqa.symbol": symbol, "rqa.side": "buy", "b": True, "f": 1.5, "i": 0})
    meter.create_up_down_counter("cash").add(-2.5)
    meter.create_up_down_counter("debt").add(-3)
    meter.create_counter("zero").add(0)
    meter.create_counter("big").add(2**62)
    histogram = other.create_histogram("notional", unit="CNY")
    for value in (0.0, 1.0, 250.0, 1e9, math.inf):
        histogram.record(value, {"k": "v"})
    other.create_histogram("silent")  # no point: no data field
    other.create_histogram("negative").record(-4.5)
    other.create_observable_gauge(
        "value", [lambda options: [Observation(0.25, {"a": 1}), Observation(7), Observation(math.nan, {"x": "y"})]]
    )
    other.create_observable_gauge("empty", [lambda options: []])
    return reader.get_metrics_data()


def test_direct_bytes_equal_the_sdk_encoders():
    data = _collect()
    expected = encode_metrics(data).SerializeToString()
    assert encode_request(data) == expected
    parsed = ExportMetricsServiceRequest.FromString(expected)
    assert len(parsed.resource_metrics[0].scope_metrics) == 2  # it really holds data
    assert [p.body for p in payloads(data)] == [expected]


def test_delta_temporality_and_an_empty_resource():
    reader = InMemoryMetricReader(preferred_temporality={})
    provider = MeterProvider(metric_readers=[reader], resource=Resource({}))
    provider.get_meter("s").create_counter("c").add(1, {"k": "v"})
    data = reader.get_metrics_data()
    assert encode_request(data) == encode_metrics(data).SerializeToString()


@pytest.mark.parametrize("case", ["exponential histogram", "exemplars", "list attribute", "surrogate"])
def test_what_it_does_not_write_goes_to_the_sdk_encoder(case):
    if case == "exponential histogram":
        data = _collect([View(instrument_name="notional", aggregation=ExponentialBucketHistogramAggregation())])
    elif case == "exemplars":
        tracer = TracerProvider().get_tracer("t")
        with tracer.start_as_current_span("s"):
            data = _collect(exemplar_filter=AlwaysOnExemplarFilter())
    elif case == "list attribute":
        data = _collect(point_attributes={"l": [1, 2]})
    else:
        data = _collect(point_attributes={"s": "\ud800"})
    assert encode_request(data) is None
    if case != "surrogate":  # the SDK's encoder refuses it too: that point is dropped (rqa.export.points.dropped)
        assert [p.body for p in payloads(data)] == [encode_metrics(data).SerializeToString()]
