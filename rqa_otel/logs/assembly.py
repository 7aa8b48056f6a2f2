"""Builds the logging pipeline from settings: the one place it is wired."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Iterable, Mapping

from rqa_otel.export.exporters import otlp_endpoint, rotating_file
from rqa_otel.export.files.otlp_json import FILE_NAMES
from rqa_otel.export.otlp.payloads import LogPayloads, otlp_transport
from rqa_otel.export.delivery import PayloadLogSink
from rqa_otel.export.spool import Senders
from rqa_otel.logs.buffer import Drops, LogBuffer
from rqa_otel.logs.handler import QuantLogHandler
from rqa_otel.export.otlp.log_encoding import LogsEncoder
from rqa_otel.logs.worker import LogPipeline
from rqa_otel.logs.sampling import Sampler, SamplingRule
from rqa_otel.export.sinks import (
    LogSink,
    OtlpGrpcLogSink,
    OtlpHttpLogSink,
    OtlpJsonFileLogSink,
    TextLogSink,
)
from rqa_otel.scrub import Scrubber
from rqa_otel.config.model import OtlpSettings, SamplingRuleSettings, Settings


def sampling_rules(rules: Iterable[SamplingRuleSettings]) -> list[SamplingRule]:
    return [SamplingRule(rule.logger, logging.getLevelName(rule.level), rule.rate_per_s, rule.ratio) for rule in rules]


def otlp_log_sink(otlp: OtlpSettings, encoder: LogsEncoder, senders: Senders | None = None) -> LogSink:
    if senders is not None and senders.enabled:  # through the durable spool
        transport = otlp_transport("logs", otlp_endpoint("logs", otlp), otlp.protocol, otlp.headers)
        return PayloadLogSink(LogPayloads(encoder), senders.sender("logs", transport))
    sink = OtlpGrpcLogSink if otlp.protocol == "grpc" else OtlpHttpLogSink
    return sink(otlp_endpoint("logs", otlp), otlp.headers, otlp.timeout_s, encoder)


def build_log_pipeline(
    settings: Settings,
    resource_attributes: Mapping[str, Any],
    strategy: str,
    scrubber: Scrubber,
    on_sink_failure: Callable[[str, BaseException | None], None],
    senders: Senders | None = None,
) -> tuple[LogPipeline, QuantLogHandler]:
    log = settings.logging
    drops = Drops()
    sampler = Sampler(sampling_rules(log.sampling_rules))
    buffer = LogBuffer(log.queue_size, drops, max_wait_s=log.max_wait_s)
    encoder = LogsEncoder(resource_attributes)

    kind = settings.export.logs
    otlp = settings.export.otlp
    primary: LogSink
    if kind == "file":
        path = os.path.join(settings.export.directory, FILE_NAMES["logs"])
        primary = OtlpJsonFileLogSink(rotating_file(path, settings.rotation), encoder)
    elif kind == "console":
        primary = TextLogSink(sys.stderr)
    elif kind == "influxdb":
        from rqa_otel.export.influx.exporter import influx_log_sink

        primary = influx_log_sink(
            settings.export.influxdb, resource_attributes, senders or Senders(False, "", 1, otlp.timeout_s)
        )
    else:
        primary = otlp_log_sink(otlp, encoder, senders)
    mirrors: list[LogSink] = []
    if log.console and kind != "console":
        mirrors.append(TextLogSink(sys.stderr))
    if log.file:
        mirrors.append(TextLogSink(rotating_file(log.file, settings.rotation), json_lines=log.file_format == "json"))

    pipeline = LogPipeline(
        buffer,
        sampler,
        drops,
        scrubber,
        primary,
        mirrors,
        batch_size=log.batch_size,
        flush_interval_s=log.flush_interval_s,
        summary_interval_s=log.summary_interval_s,
        default_strategy=strategy,
        on_sink_failure=on_sink_failure,
    )
    handler = QuantLogHandler(buffer, sampler, drops, strategy, level=logging.getLevelName(log.level))
    return pipeline, handler
