"""The one place the telemetry pipeline is assembled from settings.

``Pipeline(live_settings)`` builds, from the snapshot in force:

- the OTel Resource, the scrubber, and the senders every exporter sends
  through (``export.spool``: a durable Spool, or a Delivery);
- the trace and metric exporters (``export.exporters``) and the SDK
  providers around them; a signal whose exporter is ``none`` gets the API's
  no-op provider, so a disabled signal costs the strategy nothing;
- the log pipeline (``logs``): handler, buffer, sampler and export worker;
- the project's own metrics: log drops and suppressions, spool sizes, drops
  and replays, resource gauges (``resources``);
- readiness checks and the ops endpoints (``ops``);
- the reactions to a settings reload that need no restart (the OTLP
  endpoint, the log level, the sampling rules).

``rqa_otel.telemetry`` wraps it in the public handle and ``setup()``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
import weakref
from typing import Any, Callable

from opentelemetry import _logs as otel_logs
from opentelemetry import metrics, trace
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from rqa_otel import names
from rqa_otel.alerts import Alerts
from rqa_otel.config.live import LiveSettings
from rqa_otel.config.model import Settings
from rqa_otel.export.exporters import build_exporter, otlp_log_sink, reconnect_otlp
from rqa_otel.export.metric_producers import Producers
from rqa_otel.export.spool import Senders
from rqa_otel.logs.assembly import build_log_pipeline, sampling_rules
from rqa_otel.logs.sdk_bridge import BufferingLogRecordProcessor
from rqa_otel.logs.worker import LogExportWorker
from rqa_otel.ops.readiness import Check, exporter_check
from rqa_otel.resources import ResourceGauges, ResourceSampler
from rqa_otel.scrub import Scrubber

try:
    from importlib.metadata import version as _version

    VERSION = _version("rqa-otel")
except Exception:  # running from a source tree that is not installed
    VERSION = "0+unknown"

SIGNALS = ("traces", "metrics", "logs")


class Pipeline:
    """Providers, exporters, the log pipeline, self-metrics, readiness and the
    ops server, built once from ``live.current`` (see the module doc)."""

    def __init__(self, live: LiveSettings) -> None:
        self.live_settings = live
        settings = live.current
        self.strategy = settings.strategy or names.DEFAULT_STRATEGY
        self.resource = build_resource(settings)
        renew_pid_after_fork(self.resource)
        self.scrubber = Scrubber(extra_patterns=settings.scrub.patterns, allowlist=settings.scrub.allowlist)
        for secret in (settings.export.influxdb.token, settings.export.influxdb.password):
            if secret:  # never exported, whatever a log line or span attribute holds
                self.scrubber.register_secret(secret)
        spool = settings.export.spool
        self.senders = Senders(spool.enabled, spool.directory, spool.max_bytes, settings.export.otlp.timeout_s)
        self.exporters = {
            signal: build_exporter(signal, settings, self.scrubber, self.senders) for signal in ("traces", "metrics")
        }
        self.producers = Producers(self.resource, InstrumentationScope(names.SCOPE, VERSION))
        if self.exporters["metrics"] is not None:
            self.exporters["metrics"].augment = self.producers.augment
        self.pull_reader = _pull_reader() if settings.ops.http_port else None
        if self.pull_reader is not None:
            self.pull_reader.augment = self.producers.augment
        self.readiness_checks: dict[str, Check] = {}
        self.tracer_provider = self._build_tracer_provider()
        self.meter_provider = self._build_meter_provider()
        self.tracer = self.tracer_provider.get_tracer(names.SCOPE, VERSION)
        self.meter = self.meter_provider.get_meter(names.SCOPE, VERSION)
        self.alerts = Alerts(self.tracer, self.meter, self.strategy)
        self.log_worker: LogExportWorker | None = None
        self.logging_handler: logging.Handler | None = None
        if settings.export.logs != "none":
            self.log_worker, self.logging_handler = build_log_pipeline(
                settings,
                dict(self.resource.attributes),
                self.strategy,
                self.scrubber,
                on_sink_failure=self._log_sink_failed,
                senders=self.senders,
            )
            self._observe_log_accounting(self.log_worker)
        self.logger_provider = self._build_logger_provider()
        self.resource_gauges = self._observe_resources()
        self._observe_spools()
        self._add_export_checks()
        self.ops = self._start_ops_server() if settings.ops.http_port else None

    @property
    def settings(self) -> Settings:
        return self.live_settings.current

    # --- providers ------------------------------------------------------------

    def _build_tracer_provider(self) -> trace.TracerProvider:
        exporter = self.exporters["traces"]
        if exporter is None:
            return trace.NoOpTracerProvider()
        provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=self._export_timeout_ms()))
        return provider

    def _build_meter_provider(self) -> metrics.MeterProvider:
        readers: list = []
        if self.exporters["metrics"] is not None:
            readers.append(
                PeriodicExportingMetricReader(
                    self.exporters["metrics"],
                    export_interval_millis=self.settings.export.metric_interval_s * 1000,
                    export_timeout_millis=self._export_timeout_ms(),
                )
            )
        if self.pull_reader is not None:
            readers.append(self.pull_reader)
        if not readers:
            return metrics.NoOpMeterProvider()
        return MeterProvider(resource=self.resource, metric_readers=readers, shutdown_on_exit=False)

    def _build_logger_provider(self) -> otel_logs.LoggerProvider:
        """For code that uses the OTel Logs API directly: its records join the
        stdlib handler's pipeline."""
        if self.log_worker is None:
            return otel_logs.NoOpLoggerProvider()
        provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
        provider.add_log_record_processor(BufferingLogRecordProcessor(self.log_worker.buffer, self.strategy))
        return provider

    def _export_timeout_ms(self) -> float:
        return self.settings.export.otlp.timeout_s * 1000

    def sdk_providers(self) -> list[Any]:
        """The providers that flush and shut down (the no-op ones do not)."""
        providers = (self.tracer_provider, self.logger_provider, self.meter_provider)
        return [p for p in providers if hasattr(p, "force_flush")]

    # --- the project's own metrics ----------------------------------------------

    def _observe_log_accounting(self, worker: LogExportWorker) -> None:
        def dropped(options):
            return [
                Observation(count, {names.LOG_DROP_REASON: reason, names.LOG_LEVEL: level})
                for (reason, level), count in worker.drops.snapshot().items()
            ]

        def suppressed(options):
            return [
                Observation(count, {names.LOG_LOGGER: logger_name, names.LOG_LEVEL: logging.getLevelName(levelno)})
                for (logger_name, levelno), count in worker.sampler.suppressed_totals().items()
            ]

        self.meter.create_observable_counter(
            names.LOG_RECORDS_DROPPED_COUNTER, [dropped], unit="{record}",
            description="Log records not exported, by reason and level.",
        )
        self.meter.create_observable_counter(
            names.LOG_RECORDS_SUPPRESSED_COUNTER, [suppressed], unit="{record}",
            description="Log records suppressed by sampling, by logger and level.",
        )

    def _observe_resources(self) -> ResourceGauges | None:
        if not self.settings.resources.enabled or self.exporters["metrics"] is None and self.pull_reader is None:
            return None
        sampler = ResourceSampler(gpu="auto" if self.settings.resources.gpu else None)
        sampler.open_gpu_in_background()
        # os.getpid() at each cycle: a forked worker reports itself.
        return ResourceGauges(
            self.meter, sampler, lambda: {os.getpid(): self.strategy}, host=self.settings.resources.host
        )

    def _observe_spools(self) -> None:
        """The spools' counts as instruments, their alerts as alerts, their
        state in /ready (docs/spool.md)."""
        senders = self.senders
        senders.events.route_alerts(lambda name, severity, message: self.alerts.emit(name, severity, message=message))
        if not senders.spools:
            return
        for spool in senders.spools:
            self.readiness_checks[f"{names.SPOOL_READINESS}_{spool.signal}"] = spool.readiness

        def size(options):
            return [Observation(s.stats().bytes, {names.EXPORT_SIGNAL: s.signal}) for s in senders.spools]

        def dropped(options):
            return [
                Observation(count, {names.EXPORT_SIGNAL: signal, names.EXPORT_VALUE: value, names.SPOOL_DROP_REASON: reason})
                for (signal, value, reason), count in senders.events.dropped_totals().items()
            ]

        def replayed(options):
            return [
                Observation(count, {names.EXPORT_SIGNAL: signal})
                for signal, count in senders.events.replayed_totals().items()
            ]

        self.meter.create_observable_gauge(
            names.SPOOL_SIZE_GAUGE, [size], unit="By", description="Bytes waiting in the durable export spool, by signal."
        )
        self.meter.create_observable_counter(
            names.SPOOL_DROPPED_COUNTER, [dropped], unit="{item}",
            description="Spans, points or records the spool could not keep or deliver, by signal, value and reason.",
        )
        self.meter.create_observable_counter(
            names.SPOOL_REPLAYED_COUNTER, [replayed], unit="{item}",
            description="Spans, points or records delivered from the spool after an outage or restart, by signal.",
        )

    def _log_sink_failed(self, destination: str, error: BaseException | None) -> None:
        self.alerts.emit(
            names.LOG_EXPORT_FAILED_ALERT,
            "critical",
            message=f"log records to {destination} are being lost: {error or 'write failed'}",
        )

    # --- readiness and the ops endpoints ----------------------------------------

    def _add_export_checks(self) -> None:
        for signal, exporter in self.exporters.items():
            if exporter is not None:
                self.readiness_checks[f"{signal}_export"] = exporter_check(exporter.counts.destination, exporter)
        if self.log_worker is not None:
            self.readiness_checks["logs_export"] = self.log_worker.readiness

    def _start_ops_server(self) -> Any:
        from rqa_otel.ops.server import OpsServer  # only with ops.http_port (the HTTP server)

        liveness = [("process", lambda: (True, "answering"))]
        if self.log_worker is not None:
            worker = self.log_worker
            liveness.append(("log_export_worker", lambda: (worker.alive, "running" if worker.alive else "stopped")))
        return OpsServer(
            self.settings.ops.http_host, self.settings.ops.http_port, liveness,
            lambda: dict(self.readiness_checks), self.pull_reader, redact=self.scrubber.scrub_text,
        )

    # --- reactions to a reload ---------------------------------------------------

    def react_to_reloads(self, capturing_root_logger: Callable[[], bool]) -> None:
        """The settings this pipeline applies on a reload; every other changed
        setting is reported as needing a restart (docs/settings.md).
        ``capturing_root_logger()`` says whether the handler sits on the root
        logger (a global handle with ``logging.capture``), whose level then
        follows ``logging.level`` too."""
        live = self.live_settings
        built = self.settings.export
        otlp_signals = [signal for signal in SIGNALS if built.exporter(signal) == "otlp"]

        def otlp_changed(key: str, old, new) -> None:
            # Only signals that were built with an OTLP exporter: changing
            # the exporter kind itself needs a restart.
            otlp = self.settings.export.otlp
            for signal in otlp_signals:
                if signal == "logs" and self.log_worker is not None:
                    sink = otlp_log_sink(otlp, dict(self.resource.attributes), self.senders)
                    self.log_worker.replace_primary(sink)
                elif self.exporters.get(signal) is not None:
                    reconnect_otlp(self.exporters[signal], signal, otlp, self.scrubber, self.senders)

        if otlp_signals:
            live.on_change("export.otlp", otlp_changed)

        handler = self.logging_handler
        if handler is None:
            return

        def level_changed(key: str, old: str, new: str) -> None:
            handler.setLevel(logging.getLevelName(new))
            if capturing_root_logger():
                root = logging.getLogger()
                if root.getEffectiveLevel() > logging.getLevelName(new):
                    root.setLevel(new)

        def sampling_changed(key: str, old, new) -> None:
            handler.set_sampling_rules(sampling_rules(new))

        live.on_change("logging.level", level_changed)
        live.on_change("logging.sampling.rules", sampling_changed)


def _pull_reader() -> Any:
    # prometheus_client is loaded only when /metrics is served.
    from rqa_otel.ops.exposition import PullMetricReader

    return PullMetricReader()


def renew_pid_after_fork(resource: Resource) -> None:
    """A forked child (a multiprocessing worker) reports as itself: its own
    process.pid. Every provider, tracer and exporter holds this one
    Resource object, so the child updates its attribute in place (a Resource
    is immutable through its API only)."""
    if not hasattr(os, "register_at_fork"):
        return
    reference = weakref.ref(resource)

    def renew() -> None:
        found = reference()
        if found is not None:
            found.attributes._dict[names.PROCESS_PID] = os.getpid()  # type: ignore[union-attr]

    os.register_at_fork(after_in_child=renew)


def build_resource(settings: Settings) -> Resource:
    environment = settings.service.environment
    attributes: dict[str, Any] = dict(settings.resource_attributes)
    attributes.update(
        {
            names.SERVICE_NAME: settings.service.name,
            names.SERVICE_INSTANCE_ID: settings.service.instance_id or str(uuid.uuid4()),
            names.DEPLOYMENT_ENVIRONMENT: environment,
            names.DEPLOYMENT_ENVIRONMENT_NAME: environment,
            names.HOST_NAME: socket.gethostname(),
            names.PROCESS_PID: os.getpid(),
            names.STRATEGY: settings.strategy or names.DEFAULT_STRATEGY,
        }
    )
    return Resource.create(attributes)
