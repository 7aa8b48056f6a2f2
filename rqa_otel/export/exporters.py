"""Builds every exporter and the primary log sink from settings.

Traces and metrics: an SDK exporter wrapped for scrubbing (spans) and
accounting. Logs: the sink the log pipeline's worker sends to
(:func:`build_log_sink`) and its text mirrors (:func:`build_log_mirrors`);
the worker itself is assembled in ``rqa_otel.logs.assembly``.

Every network destination (OTLP, InfluxDB) takes one path: an encoder, a
transport, and the sender ``Senders.sender()`` gives (a Delivery, or a Spool
with ``export.spool.enabled``). ``export.otlp`` is read only by
``rqa_otel.export.otlp.transport.otlp_transport``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping, Union

from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from rqa_otel.config.model import OtlpSettings, RotationSettings, Settings
from rqa_otel.export.accounting import AccountingMetricExporter, AccountingSpanExporter
from rqa_otel.export.delivery import PayloadLogSink, PayloadMetricExporter, PayloadSpanExporter
from rqa_otel.export.files import otlp_json
from rqa_otel.export.files.rotating import RotatingFile
from rqa_otel.export.log_sink import LogSink
from rqa_otel.export.otlp.log_encoding import LogsEncoder
from rqa_otel.export.scrubbing import ScrubbingSpanExporter
from rqa_otel.export.sinks import OtlpJsonFileLogSink, TextLogSink
from rqa_otel.export.spool import Senders
from rqa_otel.scrub import Scrubber

AccountingExporter = Union[AccountingSpanExporter, AccountingMetricExporter]


def build_exporter(
    signal: str, settings: Settings, scrubber: Scrubber, senders: Senders | None = None
) -> AccountingExporter | None:
    """The configured exporter for ``signal`` (traces|metrics), or None for
    ``none``. ``senders`` decides, for network exporters, between direct
    delivery and the durable spool (``export.spool.enabled``); without it,
    direct delivery."""
    export = settings.export
    kind = export.exporter(signal)
    if kind == "none":
        return None
    senders = senders or _direct_senders(settings)
    if kind == "influxdb":
        from rqa_otel.export.influx.exporter import influx_exporter  # loaded only when configured

        inner, destination = influx_exporter(signal, export.influxdb, senders)
    elif kind == "file":
        inner, destination = _file_exporter(signal, export.directory, settings.rotation)
    elif kind == "console":
        inner, destination = _console_exporter(signal), "console (stdout)"
    else:
        inner, destination = _otlp_exporter(signal, export.otlp, senders)
    if signal == "traces":
        return AccountingSpanExporter(ScrubbingSpanExporter(inner, scrubber), destination)
    return AccountingMetricExporter(inner, destination)


def reconnect_otlp(
    exporter: AccountingExporter, signal: str, otlp: OtlpSettings, scrubber: Scrubber, senders: Senders
) -> None:
    """Point an OTLP trace or metric exporter at new ``export.otlp`` settings
    (endpoint, protocol, headers, timeout) from its next export on."""
    inner, destination = _otlp_exporter(signal, otlp, senders)
    if signal == "traces":
        inner = ScrubbingSpanExporter(inner, scrubber)
    exporter.replace_inner(inner, destination)


def build_log_sink(settings: Settings, resource_attributes: Mapping[str, Any], senders: Senders | None = None) -> LogSink:
    """The log pipeline's primary sink for ``export.logs`` (file, console,
    influxdb or otlp; not ``none``)."""
    kind = settings.export.logs
    senders = senders or _direct_senders(settings)
    if kind == "file":
        path = os.path.join(settings.export.directory, otlp_json.FILE_NAMES["logs"])
        return OtlpJsonFileLogSink(rotating_file(path, settings.rotation), LogsEncoder(resource_attributes))
    if kind == "console":
        return TextLogSink(sys.stderr)
    if kind == "influxdb":
        from rqa_otel.export.influx.exporter import influx_log_sink  # loaded only when configured

        return influx_log_sink(settings.export.influxdb, resource_attributes, senders)
    return otlp_log_sink(settings.export.otlp, resource_attributes, senders)


def otlp_log_sink(otlp: OtlpSettings, resource_attributes: Mapping[str, Any], senders: Senders) -> LogSink:
    """The log sink for ``export.logs = otlp``; also what replaces it when a
    settings reload changes ``export.otlp``."""
    from rqa_otel.export.otlp.encoding import LogPayloads
    from rqa_otel.export.otlp.transport import otlp_transport

    sender = senders.sender("logs", otlp_transport("logs", otlp))
    return PayloadLogSink(LogPayloads(LogsEncoder(resource_attributes)), sender)


def build_log_mirrors(settings: Settings) -> list[LogSink]:
    """The text copies of the log records beside the primary sink:
    ``logging.console`` (stderr, unless the primary already is the console)
    and ``logging.file``."""
    log = settings.logging
    mirrors: list[LogSink] = []
    if log.console and settings.export.logs != "console":
        mirrors.append(TextLogSink(sys.stderr))
    if log.file:
        mirrors.append(TextLogSink(rotating_file(log.file, settings.rotation), json_lines=log.file_format == "json"))
    return mirrors


def _direct_senders(settings: Settings) -> Senders:
    """Direct delivery within the export timeout, for callers that bring no
    ``Senders`` of their own."""
    return Senders(False, "", 1, settings.export.otlp.timeout_s)


def _otlp_exporter(signal: str, otlp: OtlpSettings, senders: Senders) -> tuple[Any, str]:
    # Loaded only when OTLP is configured (the HTTP client, grpc with that protocol).
    from rqa_otel.export.otlp.encoding import encode_metrics, encode_spans
    from rqa_otel.export.otlp.transport import otlp_transport

    sender = senders.sender(signal, otlp_transport(signal, otlp))
    if signal == "traces":
        return PayloadSpanExporter(encode_spans, sender), sender.transport.destination
    return PayloadMetricExporter(encode_metrics, sender), sender.transport.destination


def rotating_file(path: str | os.PathLike[str], rotation: RotationSettings) -> RotatingFile:
    """Every file rqa-otel writes rotates the same way and survives a full disk."""
    return RotatingFile(path, max_bytes=rotation.max_bytes, backup_count=rotation.backup_count, compress=rotation.compress)


def _file_exporter(signal: str, directory: str, rotation: RotationSettings) -> tuple[Any, str]:
    cls = {"traces": otlp_json.OtlpJsonSpanExporter, "metrics": otlp_json.OtlpJsonMetricExporter}[signal]
    file = rotating_file(os.path.join(directory, otlp_json.FILE_NAMES[signal]), rotation)
    return cls(file), f"file {file.path}"


def _console_exporter(signal: str) -> Any:
    return ConsoleSpanExporter() if signal == "traces" else ConsoleMetricExporter()
