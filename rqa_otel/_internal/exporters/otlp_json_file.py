"""The embedded default exporter: OTLP JSON lines.

Each export call appends one line holding one Export{Trace,Metrics,Logs}ServiceRequest
in OTLP's protobuf-JSON mapping, which is what the Collector's ``file``
exporter writes and its ``otlpjsonfile`` receiver reads: lowerCamelCase
field names, integer enums, 64-bit integers as decimal strings, and trace and
span ids as hex (the one place OTLP departs from the proto3 JSON mapping,
which would write them as base64).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Sequence

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from rqa_otel._internal.rotating_file import RotatingFile

_ID_FIELDS = frozenset(("traceId", "spanId", "parentSpanId"))

FILE_NAMES = {"traces": "traces.jsonl", "metrics": "metrics.jsonl", "logs": "logs.jsonl"}


def request_to_json_line(request: Any) -> bytes:
    """One OTLP protobuf request as one OTLP-JSON line (ending in a newline)."""
    document = MessageToDict(request, use_integers_for_enums=True)
    _ids_to_hex(document)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _ids_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _ids_to_hex(item)


class OtlpJsonSpanExporter(SpanExporter):
    def __init__(self, file: RotatingFile) -> None:
        self._file = file

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        written = self._file.write_lines(request_to_json_line(encode_spans(spans)), count=len(spans))
        return SpanExportResult.SUCCESS if written else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    def __init__(self, file: RotatingFile) -> None:
        super().__init__()
        self._file = file

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        written = self._file.write_lines(request_to_json_line(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS if written else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._file.close()
