"""Builds the logging pipeline from settings: the one place it is wired.

The buffer, sampler, handler and export worker are the log pipeline's own;
the sinks the worker sends to come from ``rqa_otel.export.exporters``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping

from rqa_otel.config.model import SamplingRuleSettings, Settings
from rqa_otel.export.exporters import build_log_mirrors, build_log_sink
from rqa_otel.export.spool import Senders
from rqa_otel.logs.buffer import Drops, LogBuffer
from rqa_otel.logs.handler import QuantLogHandler
from rqa_otel.logs.sampling import Sampler, SamplingRule
from rqa_otel.logs.worker import LogExportWorker
from rqa_otel.scrub import Scrubber


def sampling_rules(rules: Iterable[SamplingRuleSettings]) -> list[SamplingRule]:
    return [SamplingRule(rule.logger, logging.getLevelName(rule.level), rule.rate_per_s, rule.ratio) for rule in rules]


def build_log_pipeline(
    settings: Settings,
    resource_attributes: Mapping[str, Any],
    strategy: str,
    scrubber: Scrubber,
    on_sink_failure: Callable[[str, BaseException | None], None],
    senders: Senders | None = None,
) -> tuple[LogExportWorker, QuantLogHandler]:
    log = settings.logging
    drops = Drops()
    sampler = Sampler(sampling_rules(log.sampling_rules))
    buffer = LogBuffer(log.queue_size, drops, max_wait_s=log.max_wait_s)

    pipeline = LogExportWorker(
        buffer,
        sampler,
        drops,
        scrubber,
        build_log_sink(settings, resource_attributes, senders),
        build_log_mirrors(settings, resource_attributes, senders),
        batch_size=log.batch_size,
        flush_interval_s=log.flush_interval_s,
        summary_interval_s=log.summary_interval_s,
        default_strategy=strategy,
        on_sink_failure=on_sink_failure,
        attribute_limits=settings.sdk.limits.log_record(),
    )
    handler = QuantLogHandler(
        buffer, sampler, drops, strategy, level=logging.getLevelName(log.level), code_attributes=log.code_attributes
    )
    return pipeline, handler
