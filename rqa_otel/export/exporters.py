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
from typing import TYPE_CHECKING, Any, Mapping, Union

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, ConsoleMetricExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from rqa_otel._util.private_files import DEFAULT_FILE_MODE
from rqa_otel.config.model import OtlpSettings, RotationSettings, Settings
from rqa_otel.export.accounting import AccountingMetricExporter, AccountingSpanExporter
from rqa_otel.export.delivery import PayloadLogSink, PayloadMetricExporter, PayloadSpanExporter
from rqa_otel.export.log_sink import LogSink
from rqa_otel.export.otlp.log_encoding import LogsEncoder
from rqa_otel.export.scrubbing import ScrubbingSpanExporter
from rqa_otel.export.spool import Senders
from rqa_otel.scrub import Scrubber

if TYPE_CHECKING:
    from rqa_otel.export.files.rotating import RotatingFile

AccountingExporter = Union[AccountingSpanExporter, AccountingMetricExporter]


def build_exporter(
    signal: str, settings: Settings, scrubber: Scrubber, senders: Senders | None = None, kind: str | None = None
) -> AccountingExporter | None:
    """The configured exporter for ``signal`` (traces|metrics), or None for
    ``none``; ``kind`` picks one of several (``otlp,console``), default the
    first. ``senders`` decides, for network exporters, between direct
    delivery and the durable spool (``export.spool.enabled``); without it,
    direct delivery."""
    export = settings.export
    kind = kind or export.exporter(signal)
    if kind in ("none", "prometheus"):  # prometheus: the pull reader on /metrics (pipeline)
        return None
    senders = senders or _direct_senders(settings)
    if kind == "influxdb":
        from rqa_otel.export.influx.exporter import influx_exporter  # loaded only when configured

        inner, destination = influx_exporter(signal, export.influxdb, senders)
    elif kind == "file":
        inner, destination = _file_exporter(signal, export.directory, settings.rotation, export.file_mode)
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


def build_log_sink(
    settings: Settings, resource_attributes: Mapping[str, Any], senders: Senders | None = None, kind: str | None = None
) -> LogSink:
    """The log pipeline's primary sink for ``export.logs`` (file, console,
    influxdb or otlp; not ``none``); ``kind`` picks one of several, default
    the first."""
    kind = kind or settings.export.exporter("logs")
    senders = senders or _direct_senders(settings)
    # The file and console sinks are loaded for these exporters only: their
    # text formats cost ~3 ms to import.
    if kind == "file":
        from rqa_otel.export.files import otlp_json
        from rqa_otel.export.sinks import OtlpJsonFileLogSink

        path = os.path.join(settings.export.directory, otlp_json.FILE_NAMES["logs"])
        return OtlpJsonFileLogSink(
            rotating_file(path, settings.rotation, settings.export.file_mode), LogsEncoder(resource_attributes)
        )
    if kind == "console":
        from rqa_otel.export.sinks import TextLogSink

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


def build_log_mirrors(
    settings: Settings, resource_attributes: Mapping[str, Any] | None = None, senders: Senders | None = None
) -> list[LogSink]:
    """The sinks beside the primary one: the other exporters of
    ``export.logs`` (``otlp,console``), ``logging.console`` (stderr,
    unless an exporter already is the console) and ``logging.file``."""
    log = settings.logging
    kinds = settings.export.exporters("logs")
    mirrors: list[LogSink] = [
        build_log_sink(settings, resource_attributes or {}, senders, kind=kind) for kind in kinds[1:]
    ]
    if log.console and "console" not in kinds:
        from rqa_otel.export.sinks import TextLogSink  # here: see build_log_sink

        mirrors.append(TextLogSink(sys.stderr))
    if log.file:
        from rqa_otel.export.sinks import TextLogSink

        text_file = rotating_file(log.file, settings.rotation, settings.export.file_mode)
        mirrors.append(TextLogSink(text_file, json_lines=log.file_format == "json"))
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
    temporality = temporality_preference(otlp.temporality)
    return PayloadMetricExporter(encode_metrics, sender, preferred_temporality=temporality), sender.transport.destination


def temporality_preference(preference: str) -> dict[type, AggregationTemporality]:
    """``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` as the SDK's
    map, per the specification: ``delta`` makes counters (sync and async)
    and histograms delta; ``lowmemory`` only the synchronous counter and
    the histogram; up-down counters and gauges stay cumulative."""
    delta, cumulative = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
    chosen = {
        Counter: cumulative, ObservableCounter: cumulative, Histogram: cumulative,
        UpDownCounter: cumulative, ObservableUpDownCounter: cumulative, ObservableGauge: cumulative,
    }
    if preference == "delta":
        chosen.update({Counter: delta, ObservableCounter: delta, Histogram: delta})
    elif preference == "lowmemory":
        chosen.update({Counter: delta, Histogram: delta})
    return chosen


def rotating_file(path: str | os.PathLike[str], rotation: RotationSettings, file_mode: int = DEFAULT_FILE_MODE) -> RotatingFile:
    """Every file rqa-otel writes rotates the same way, survives a full disk
    and is created with ``export.file_mode``."""
    from rqa_otel.export.files.rotating import RotatingFile  # the file exporters' (not OTLP's)

    return RotatingFile(
        path, max_bytes=rotation.max_bytes, backup_count=rotation.backup_count, compress=rotation.compress,
        file_mode=file_mode,
    )


def _file_exporter(signal: str, directory: str, rotation: RotationSettings, file_mode: int) -> tuple[Any, str]:
    from rqa_otel.export.files import otlp_json

    cls = {"traces": otlp_json.OtlpJsonSpanExporter, "metrics": otlp_json.OtlpJsonMetricExporter}[signal]
    file = rotating_file(os.path.join(directory, otlp_json.FILE_NAMES[signal]), rotation, file_mode)
    return cls(file), f"file {file.path}"


def _console_exporter(signal: str) -> Any:
    return ConsoleSpanExporter() if signal == "traces" else ConsoleMetricExporter()
