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
import os
import threading
from pathlib import Path
from typing import Any, Sequence

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

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


class _JsonLinesFile:
    """Appends whole lines with one write() on an O_APPEND descriptor, so that
    several processes may share a file without interleaving their lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def append(self, line: bytes) -> None:
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            view = memoryview(line)
            while view:  # a regular file only writes short on ENOSPC, which raises
                written = os.write(self._fd, view)
                view = view[written:]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class OtlpJsonSpanExporter(SpanExporter):
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._file = _JsonLinesFile(Path(directory) / FILE_NAMES["traces"])

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._file.append(request_to_json_line(encode_spans(spans)))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__()
        self._file = _JsonLinesFile(Path(directory) / FILE_NAMES["metrics"])

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self._file.append(request_to_json_line(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._file.close()


class OtlpJsonLogExporter(LogRecordExporter):
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._file = _JsonLinesFile(Path(directory) / FILE_NAMES["logs"])

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self._file.append(request_to_json_line(encode_logs(batch)))
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
