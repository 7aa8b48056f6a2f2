"""OTLP encoders: an SDK batch, split by value class, as payloads of
Export*ServiceRequest protobuf bytes, for any sender (``rqa_otel.export.delivery``).

Spans and metrics go through opentelemetry-exporter-otlp-proto-common (the
SDK exporters' own encoders); log entries through the project's
``LogsEncoder``, which writes the protobuf wire format directly. The
transports that send these bytes are in ``rqa_otel.export.otlp.transport``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from opentelemetry.sdk.metrics.export import Metric, MetricsData, ResourceMetrics, ScopeMetrics

from rqa_otel.export.delivery import Payload, metrics_value, span_value, split_by_value, split_logs_by_value
from rqa_otel.export.dropped import DROPPED_POINTS
from rqa_otel.export.otlp.log_encoding import LogsEncoder
from rqa_otel.export.otlp.metric_encoding import encode_request as _direct_metrics_request

# The SDK's encoders (protobuf and the generated OTLP classes, ~30 ms to
# import) are loaded when first needed: spans, or metrics the direct writer
# leaves to them (rqa_otel.export.otlp.metric_encoding).


def _spans_request(spans: Sequence[Any]) -> Any:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(spans)


def _metrics_request(data: MetricsData) -> Any:
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    return encode_metrics(data)


# One value the protobuf cannot hold (a lone surrogate in a span name, a
# scope name...) makes the SDK's encoder raise for the whole request. Then,
# and only then, the batch is encoded item by item: the items that fail are
# left out and counted (rqa.export.points.dropped), the rest is sent. A
# metric series keeps its attributes for the life of the process, so without
# this every later metric export would fail too.


def encode_spans(spans: Sequence[Any]) -> list[Payload]:
    payloads = []
    for value, group in split_by_value(spans, span_value):
        try:
            body = _spans_request(group).SerializeToString()
        except Exception:
            group = [span for span in group if _encodes("traces", lambda: _spans_request([span]).SerializeToString())]
            if not group:
                continue
            body = _spans_request(group).SerializeToString()
        payloads.append(Payload("traces", body, value, len(group)))
    return payloads


def encode_metrics(data: MetricsData) -> list[Payload]:
    points = _count_points(data)
    if not points:
        return []
    direct = _direct_metrics_request(data)
    if direct is not None:
        return [Payload("metrics", direct, metrics_value(data), points)]
    try:
        body = _metrics_request(data).SerializeToString()
    except Exception:
        data = _encodable_points(data)
        points = _count_points(data)
        if not points:
            return []
        body = _metrics_request(data).SerializeToString()
    return [Payload("metrics", body, metrics_value(data), points)]


def _count_points(data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


def _encodes(signal: str, encode: Any) -> bool:
    try:
        encode()
    except Exception as exc:
        DROPPED_POINTS.add(signal, "invalid_value", f"OTLP protobuf: {type(exc).__name__}")
        return False
    return True


def _encodable_points(data: MetricsData) -> MetricsData:
    """``data`` less the data points that cannot be encoded on their own."""
    resource_metrics = []
    for rm in data.resource_metrics:
        scopes = []
        for sm in rm.scope_metrics:
            metrics = []
            for metric in sm.metrics:

                def alone(point: Any, rm: Any = rm, sm: Any = sm, metric: Metric = metric) -> MetricsData:
                    single = replace(metric, data=replace(metric.data, data_points=[point]))
                    return MetricsData([ResourceMetrics(rm.resource, [ScopeMetrics(sm.scope, [single], sm.schema_url)], rm.schema_url)])

                good = [
                    point for point in metric.data.data_points
                    if _encodes("metrics", lambda point=point: _metrics_request(alone(point)).SerializeToString())
                ]
                if good:
                    metrics.append(replace(metric, data=replace(metric.data, data_points=good)))
            if metrics:
                scopes.append(replace(sm, metrics=metrics))
        if scopes:
            resource_metrics.append(replace(rm, scope_metrics=scopes))
    return MetricsData(resource_metrics)


class LogPayloads:
    """Log entries as OTLP payloads, one per value class."""

    def __init__(self, encoder: LogsEncoder) -> None:
        self._encoder = encoder

    def __call__(self, batch: Sequence[Any], observed_ns: int) -> list[Payload]:
        return [
            Payload("logs", self._encoder.encode(group, observed_ns), value, len(group))
            for value, group in split_logs_by_value(batch)
        ]
