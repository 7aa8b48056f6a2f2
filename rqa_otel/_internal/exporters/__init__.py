"""Builds one signal's exporter from settings, wrapped for accounting.

The InfluxDB exporter plugs in here as one more name in
``rqa_otel.settings.EXPORTERS``.
"""

from __future__ import annotations

from typing import Union
from urllib.parse import urlsplit

from rqa_otel._internal.exporters.accounting import (
    AccountingLogExporter,
    AccountingMetricExporter,
    AccountingSpanExporter,
)
from rqa_otel.settings import ExportSettings, OtlpSettings

AccountingExporter = Union[AccountingSpanExporter, AccountingMetricExporter, AccountingLogExporter]

_WRAPPERS = {"traces": AccountingSpanExporter, "metrics": AccountingMetricExporter, "logs": AccountingLogExporter}
_DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}


def build_exporter(signal: str, export: ExportSettings) -> AccountingExporter | None:
    """The configured exporter for ``signal`` (traces|metrics|logs), or None for ``none``."""
    kind = export.exporter(signal)
    if kind == "none":
        return None
    if kind == "file":
        inner, destination = _file_exporter(signal, export.directory)
    elif kind == "console":
        inner, destination = _console_exporter(signal), "console (stdout)"
    else:
        inner, destination = _otlp_exporter(signal, export.otlp)
    return _WRAPPERS[signal](inner, destination)


def _file_exporter(signal: str, directory: str):
    from rqa_otel._internal.exporters import otlp_json_file as f

    cls = {"traces": f.OtlpJsonSpanExporter, "metrics": f.OtlpJsonMetricExporter, "logs": f.OtlpJsonLogExporter}[signal]
    exporter = cls(directory)
    return exporter, f"file {exporter.path}"


def _console_exporter(signal: str):
    if signal == "traces":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if signal == "metrics":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

    return ConsoleLogRecordExporter()


def otlp_endpoint(signal: str, otlp: OtlpSettings) -> str:
    """The URL the exporter sends to: the base endpoint for grpc; for
    http/protobuf the base plus ``/v1/<signal>``, as the OTel specification
    does for OTEL_EXPORTER_OTLP_ENDPOINT."""
    base = otlp.endpoint or _DEFAULT_ENDPOINTS[otlp.protocol]
    if otlp.protocol == "grpc":
        return base
    return base.rstrip("/") + f"/v1/{signal}"


def _otlp_exporter(signal: str, otlp: OtlpSettings):
    endpoint = otlp_endpoint(signal, otlp)
    options = dict(endpoint=endpoint, headers=dict(otlp.headers), timeout=otlp.timeout_s)
    if otlp.protocol == "grpc":
        options["insecure"] = urlsplit(endpoint).scheme == "http"
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Exporter
        elif signal == "metrics":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as Exporter
    else:
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Exporter
        elif signal == "metrics":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as Exporter
    return Exporter(**options), f"OTLP {otlp.protocol} {endpoint}"
