"""Builds the trace and metric exporters from settings, wrapped for
scrubbing (spans) and accounting. Logs have a pipeline of their own
(``rqa_otel._internal.logs``); the OTLP endpoint and file rules are shared.

The InfluxDB exporter plugs in here as one more name in
``rqa_otel.config.model.EXPORTERS``.
"""

from __future__ import annotations

import os
from typing import Union
from urllib.parse import urlsplit

from rqa_otel.export.accounting import AccountingMetricExporter, AccountingSpanExporter
from rqa_otel.export.files.rotating import RotatingFile
from rqa_otel.export.spool import Senders
from rqa_otel.export.scrubbing import ScrubbingSpanExporter
from rqa_otel.scrub import Scrubber
from rqa_otel.config.model import OtlpSettings, RotationSettings, Settings

AccountingExporter = Union[AccountingSpanExporter, AccountingMetricExporter]
_DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}


def build_exporter(
    signal: str, settings: Settings, scrubber: Scrubber, senders: Senders | None = None
) -> AccountingExporter | None:
    """The configured exporter for ``signal`` (traces|metrics), or None for
    ``none``. With ``senders`` spooling (``export.spool.enabled``), network
    exporters send through the durable spool."""
    export = settings.export
    kind = export.exporter(signal)
    if kind == "none":
        return None
    if kind == "influxdb":
        from rqa_otel.export.influx.exporter import influx_exporter

        inner, destination = influx_exporter(signal, export.influxdb, senders or Senders(False, "", 1, export.otlp.timeout_s))
    elif kind == "file":
        inner, destination = _file_exporter(signal, export.directory, settings.rotation)
    elif kind == "console":
        inner, destination = _console_exporter(signal), "console (stdout)"
    else:
        inner, destination = _otlp_or_spooled(signal, export.otlp, senders)
    if signal == "traces":
        return AccountingSpanExporter(ScrubbingSpanExporter(inner, scrubber), destination)
    return AccountingMetricExporter(inner, destination)


def reconnect_otlp(
    exporter: AccountingExporter, signal: str, otlp: OtlpSettings, scrubber: Scrubber, senders: Senders | None = None
) -> None:
    """Point an OTLP exporter at new ``export.otlp`` settings (endpoint,
    protocol, headers, timeout) from its next export on."""
    inner, destination = _otlp_or_spooled(signal, otlp, senders)
    if signal == "traces":
        inner = ScrubbingSpanExporter(inner, scrubber)
    exporter.replace_inner(inner, destination)


def _otlp_or_spooled(signal: str, otlp: OtlpSettings, senders: Senders | None):
    if senders is not None and senders.enabled:
        return _spooled_otlp_exporter(signal, otlp, senders)
    return _otlp_exporter(signal, otlp)


def rotating_file(path: str | os.PathLike[str], rotation: RotationSettings) -> RotatingFile:
    """Every file rqa-otel writes rotates the same way and survives a full disk."""
    return RotatingFile(
        path, max_bytes=rotation.max_bytes, backup_count=rotation.backup_count, compress=rotation.compress
    )


def _file_exporter(signal: str, directory: str, rotation: RotationSettings):
    from rqa_otel.export.files import otlp_json as f

    cls = {"traces": f.OtlpJsonSpanExporter, "metrics": f.OtlpJsonMetricExporter}[signal]
    file = rotating_file(os.path.join(directory, f.FILE_NAMES[signal]), rotation)
    return cls(file), f"file {file.path}"


def _console_exporter(signal: str):
    if signal == "traces":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    return ConsoleMetricExporter()


def otlp_endpoint(signal: str, otlp: OtlpSettings) -> str:
    """The URL the exporter sends to: the base endpoint for grpc; for
    http/protobuf the base plus ``/v1/<signal>``, as the OTel specification
    does for OTEL_EXPORTER_OTLP_ENDPOINT."""
    base = otlp.endpoint or _DEFAULT_ENDPOINTS[otlp.protocol]
    if otlp.protocol == "grpc":
        return base
    return base.rstrip("/") + f"/v1/{signal}"


def _spooled_otlp_exporter(signal: str, otlp: OtlpSettings, senders: Senders):
    from rqa_otel.export.delivery import PayloadMetricExporter, PayloadSpanExporter
    from rqa_otel.export.otlp.payloads import encode_metrics, encode_spans, otlp_transport

    sender = senders.sender(signal, otlp_transport(signal, otlp_endpoint(signal, otlp), otlp.protocol, otlp.headers))
    if signal == "traces":
        return PayloadSpanExporter(encode_spans, sender), sender.transport.destination
    return PayloadMetricExporter(encode_metrics, sender), sender.transport.destination


def _otlp_exporter(signal: str, otlp: OtlpSettings):
    endpoint = otlp_endpoint(signal, otlp)
    options = dict(endpoint=endpoint, headers=dict(otlp.headers), timeout=otlp.timeout_s)
    if otlp.protocol == "grpc":
        options["insecure"] = urlsplit(endpoint).scheme == "http"
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Exporter
    else:
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Exporter
    return Exporter(**options), f"OTLP {otlp.protocol} {endpoint}"
