"""OTLP encoders: an SDK batch, split by value class, as payloads of
Export*ServiceRequest protobuf bytes, for any sender (``rqa_otel.export.delivery``).

Spans and metrics go through opentelemetry-exporter-otlp-proto-common (the
SDK exporters' own encoders); log entries through the project's
``LogsEncoder``, which writes the protobuf wire format directly. The
transports that send these bytes are in ``rqa_otel.export.otlp.transport``.
"""

from __future__ import annotations

from typing import Any, Sequence

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics as _metrics_request
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as _spans_request
from opentelemetry.sdk.metrics.export import MetricsData

from rqa_otel.export.delivery import Payload, metrics_value, span_value, split_by_value, split_logs_by_value
from rqa_otel.export.otlp.log_encoding import LogsEncoder


def encode_spans(spans: Sequence[Any]) -> list[Payload]:
    return [
        Payload("traces", _spans_request(group).SerializeToString(), value, len(group))
        for value, group in split_by_value(spans, span_value)
    ]


def encode_metrics(data: MetricsData) -> list[Payload]:
    points = sum(
        len(metric.data.data_points)
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )
    if not points:
        return []
    return [Payload("metrics", _metrics_request(data).SerializeToString(), metrics_value(data), points)]


class LogPayloads:
    """Log entries as OTLP payloads, one per value class."""

    def __init__(self, encoder: LogsEncoder) -> None:
        self._encoder = encoder

    def __call__(self, batch: Sequence[Any], observed_ns: int) -> list[Payload]:
        return [
            Payload("logs", self._encoder.encode(group, observed_ns), value, len(group))
            for value, group in split_logs_by_value(batch)
        ]
