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
from typing import Any, Callable

from opentelemetry import _logs as otel_logs
from opentelemetry import metrics, trace
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from rqa_otel import names
from rqa_otel._util.fork import in_forked_child
from rqa_otel._util.version import rqa_otel_version
from rqa_otel.alerts import Alerts
from rqa_otel.config.live import LiveSettings
from rqa_otel.config.model import LimitSettings, Settings
from rqa_otel.export.dropped import DROPPED_POINTS
from rqa_otel.export.exporters import build_exporter, otlp_log_sink, reconnect_otlp
from rqa_otel.export.metric_producers import Producers
from rqa_otel.export.scrubbing import scrub_resource_attributes, scrubbing_view
from rqa_otel.export.spool import Senders
from rqa_otel.logs.assembly import build_log_pipeline, sampling_rules
from rqa_otel.logs.sdk_bridge import BufferingLogRecordProcessor
from rqa_otel.logs.worker import LogExportWorker
from rqa_otel.ops.readiness import Check, exporter_check
from rqa_otel.resources import ResourceGauges, ResourceSampler
from rqa_otel.scrub import Scrubber

VERSION = rqa_otel_version()

SIGNALS = ("traces", "metrics", "logs")


class Pipeline:
    """Providers, exporters, the log pipeline, self-metrics, readiness and the
    ops server, built once from ``live.current`` (see the module doc)."""

    def __init__(self, live: LiveSettings) -> None:
        self.live_settings = live
        settings = live.current
        self.strategy = settings.strategy or names.DEFAULT_STRATEGY
        self.scrubber = Scrubber(extra_patterns=settings.scrub.patterns, allowlist=settings.scrub.allowlist)
        for secret in (settings.export.influxdb.token, settings.export.influxdb.password, *live.secret_values):
            if secret:  # never exported, whatever a log line or span attribute holds
                self.scrubber.register_secret(secret)
        for signal in SIGNALS:  # API keys in OTLP headers (generic or per signal), likewise
            for header, value in settings.export.otlp.for_signal(signal).headers.items():
                if value and self.scrubber.is_secret_key(header):
                    self.scrubber.register_secret(value)
        self.resource = build_resource(settings, self.scrubber)
        renew_pid_after_fork(self.resource)
        spool = settings.export.spool
        # With the spool off, a batch is retried until the signal's export
        # timeout (OTEL_BSP_EXPORT_TIMEOUT, OTEL_METRIC_EXPORT_TIMEOUT,
        # OTEL_BLRP_EXPORT_TIMEOUT) or the OTLP exporter's own timeout
        # (OTEL_EXPORTER_OTLP_[<SIGNAL>_]TIMEOUT) is spent, whichever is first.
        export_timeouts = {
            "traces": settings.export.span_batch.export_timeout_s,
            "metrics": settings.export.metric_timeout_s,
            "logs": settings.logging.export_timeout_s,
        }
        budgets = {
            signal: min(timeout_s, settings.export.otlp.for_signal(signal).timeout_s)
            for signal, timeout_s in export_timeouts.items()
        }
        self.senders = Senders(
            spool.enabled, spool.directory, spool.max_bytes, settings.export.otlp.timeout_s, spool.send_budget_s,
            budgets=budgets,
        )
        # Every exporter of each signal (OTEL_TRACES_EXPORTER=otlp,console is
        # two), by kind; ``exporters`` holds the first, the primary.
        self.exporter_lists: dict[str, list[tuple[str, Any]]] = {
            signal: [
                (kind, build_exporter(signal, settings, self.scrubber, self.senders, kind=kind))
                for kind in settings.export.exporters(signal)
                if kind not in ("none", "prometheus")
            ]
            for signal in ("traces", "metrics")
        }
        self.exporters = {
            signal: (built[0][1] if built else None) for signal, built in self.exporter_lists.items()
        }
        self.producers = Producers(self.resource, InstrumentationScope(names.SCOPE, VERSION))
        for _, exporter in self.exporter_lists["metrics"]:
            exporter.augment = self.producers.augment
        self.ops_endpoint = ops_endpoint(settings)
        self.pull_reader = _pull_reader() if self.ops_endpoint is not None else None
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
        self._observe_dropped_points()
        self._add_export_checks()
        self.ops = self._start_ops_server() if self.ops_endpoint is not None else None

    @property
    def settings(self) -> Settings:
        return self.live_settings.current

    # --- providers ------------------------------------------------------------

    def _build_tracer_provider(self) -> trace.TracerProvider:
        if not self.exporter_lists["traces"]:
            return trace.NoOpTracerProvider()
        sdk = self.settings.sdk
        provider = TracerProvider(
            resource=self.resource,
            shutdown_on_exit=False,
            sampler=build_sampler(sdk.traces_sampler, sdk.traces_sampler_arg),
            span_limits=build_span_limits(sdk.limits),
        )
        batch = self.settings.export.span_batch
        for _, exporter in self.exporter_lists["traces"]:
            provider.add_span_processor(
                BatchSpanProcessor(
                    exporter,
                    max_queue_size=batch.max_queue_size,
                    schedule_delay_millis=batch.schedule_delay_s * 1000,
                    max_export_batch_size=min(batch.max_export_batch_size, batch.max_queue_size),
                    export_timeout_millis=batch.export_timeout_s * 1000,
                )
            )
        return provider

    def _build_meter_provider(self) -> metrics.MeterProvider:
        readers: list = []
        for _, exporter in self.exporter_lists["metrics"]:
            readers.append(
                PeriodicExportingMetricReader(
                    exporter,
                    export_interval_millis=self.settings.export.metric_interval_s * 1000,
                    export_timeout_millis=self.settings.export.metric_timeout_s * 1000,
                )
            )
        if self.pull_reader is not None:
            readers.append(self.pull_reader)
        if not readers:
            return metrics.NoOpMeterProvider()
        return MeterProvider(
            resource=self.resource,
            metric_readers=readers,
            shutdown_on_exit=False,
            exemplar_filter=build_exemplar_filter(self.settings.sdk.metrics_exemplar_filter),
            views=[scrubbing_view(self.scrubber)],
        )

    def _build_logger_provider(self) -> otel_logs.LoggerProvider:
        """For code that uses the OTel Logs API directly: its records join the
        stdlib handler's pipeline."""
        if self.log_worker is None:
            return otel_logs.NoOpLoggerProvider()
        length, count = self.settings.sdk.limits.log_record()
        provider = LoggerProvider(
            resource=self.resource,
            shutdown_on_exit=False,
            # Given, so the SDK reads no variable itself (it raises on a bad one).
            log_record_limits=LogRecordLimits(
                max_attributes=LogRecordLimits.UNSET if count is None else count,
                max_attribute_length=LogRecordLimits.UNSET if length is None else length,
            ),
        )
        provider.add_log_record_processor(BufferingLogRecordProcessor(self.log_worker.buffer, self.strategy))
        return provider

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

    def _observe_dropped_points(self) -> None:
        def dropped(options):
            return [
                Observation(count, {names.EXPORT_SIGNAL: signal, names.EXPORT_DROP_REASON: reason})
                for (signal, reason), count in DROPPED_POINTS.snapshot().items()
            ]

        self.meter.create_observable_counter(
            names.EXPORT_POINTS_DROPPED_COUNTER, [dropped], unit="{point}",
            description="Points an encoder could not carry, left out of their batch, by signal and reason.",
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
        for signal, built in self.exporter_lists.items():
            for index, (kind, exporter) in enumerate(built):
                name = f"{signal}_export" if index == 0 else f"{signal}_export_{kind}"
                self.readiness_checks[name] = exporter_check(exporter.counts.destination, exporter)
        if self.log_worker is not None:
            self.readiness_checks["logs_export"] = self.log_worker.readiness

    def _start_ops_server(self) -> Any:
        from rqa_otel.ops.server import OpsServer  # only with ops.http_port (the HTTP server)

        liveness = [("process", lambda: (True, "answering"))]
        if self.log_worker is not None:
            worker = self.log_worker
            liveness.append(("log_export_worker", lambda: (worker.alive, "running" if worker.alive else "stopped")))
        host, port = self.ops_endpoint
        return OpsServer(
            host, port, liveness,
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
        otlp_signals = [signal for signal in SIGNALS if "otlp" in built.exporters(signal)]

        def otlp_changed(key: str, old, new) -> None:
            # Only signals that were built with an OTLP exporter: changing
            # the exporter kind itself needs a restart.
            otlp = self.settings.export.otlp
            for signal in otlp_signals:
                if signal == "logs":
                    if self.log_worker is not None and built.exporter("logs") == "otlp":
                        sink = otlp_log_sink(otlp, dict(self.resource.attributes), self.senders)
                        self.log_worker.replace_primary(sink)
                    continue
                for kind, exporter in self.exporter_lists.get(signal, []):
                    if kind == "otlp":
                        reconnect_otlp(exporter, signal, otlp, self.scrubber, self.senders)

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

    def renew(found: Resource) -> None:
        found.attributes._dict[names.PROCESS_PID] = os.getpid()  # type: ignore[union-attr]

    in_forked_child(resource, renew)


def build_resource(settings: Settings, scrubber: Scrubber | None = None) -> Resource:
    """The process's resource; with ``scrubber``, its attributes scrubbed
    (``Resource.create`` adds OTEL_RESOURCE_ATTRIBUTES itself, so this runs
    on what it made)."""
    environment = settings.service.environment
    attributes: dict[str, Any] = dict(settings.resource_attributes)
    attributes.update(
        {
            names.SERVICE_NAME: settings.service.name,
            names.SERVICE_INSTANCE_ID: settings.service.instance_id or str(uuid.uuid4()),
            names.DEPLOYMENT_ENVIRONMENT_NAME: environment,
            names.HOST_NAME: socket.gethostname(),
            names.PROCESS_PID: os.getpid(),
            names.STRATEGY: settings.strategy or names.DEFAULT_STRATEGY,
        }
    )
    resource = Resource.create(attributes)
    if scrubber is None:
        return resource
    scrubbed = scrub_resource_attributes(resource.attributes, scrubber)
    return resource if scrubbed == dict(resource.attributes) else Resource(scrubbed, resource.schema_url)


def ops_endpoint(settings: Settings) -> tuple[str, int] | None:
    """(host, port) of /health, /ready and /metrics: ``ops.http_port``, or,
    for ``export.metrics`` with ``prometheus`` and no ops port, the
    Prometheus exporter's (``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT``,
    localhost:9464); None when neither asks for it."""
    if settings.ops.http_port:
        return settings.ops.http_host, settings.ops.http_port
    if "prometheus" in settings.export.exporters("metrics"):
        return settings.export.prometheus_host, settings.export.prometheus_port
    return None


def build_sampler(name: str, ratio: float) -> Any:
    """``OTEL_TRACES_SAMPLER`` / ``_ARG`` (``sdk.traces_sampler``) as an SDK sampler."""
    from opentelemetry.sdk.trace import sampling

    root = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
    }[name.removeprefix("parentbased_")]
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root


def build_exemplar_filter(name: str) -> Any:
    """``OTEL_METRICS_EXEMPLAR_FILTER`` (``sdk.metrics_exemplar_filter``),
    given to the SDK so that it reads no variable itself (it raises on a bad one)."""
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter

    return {"always_on": AlwaysOnExemplarFilter, "always_off": AlwaysOffExemplarFilter}.get(name, TraceBasedExemplarFilter)()


def build_span_limits(limits: LimitSettings) -> SpanLimits:
    """Span limits from ``sdk.limits``: the span-specific limit, else the
    general one, else the specification's default (128 for counts, none for
    lengths). Every value is given, so the SDK reads no variable itself."""

    def count(*candidates: int | None) -> int:
        return next((value for value in candidates if value is not None), 128)

    def length(*candidates: int | None) -> int:
        return next((value for value in candidates if value is not None), SpanLimits.UNSET)

    return SpanLimits(
        max_attributes=count(limits.attribute_count),
        max_span_attributes=count(limits.span_attribute_count, limits.attribute_count),
        max_events=count(limits.span_event_count),
        max_links=count(limits.span_link_count),
        max_event_attributes=count(limits.event_attribute_count, limits.attribute_count),
        max_link_attributes=count(limits.link_attribute_count, limits.attribute_count),
        max_attribute_length=length(limits.attribute_value_length),
        max_span_attribute_length=length(limits.span_attribute_value_length, limits.attribute_value_length),
    )


def _trace_context():
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _baggage():
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    return W3CBaggagePropagator()


_API_PROPAGATORS = {"tracecontext": _trace_context, "baggage": _baggage}


def install_sdk_globals(settings: Settings) -> None:
    """The process-wide parts of ``sdk``: the propagators
    (``OTEL_PROPAGATORS``) and the SDK's log level (``OTEL_LOG_LEVEL``)."""
    sdk = settings.sdk
    if sdk.log_level:
        level = {"warn": "WARNING"}.get(sdk.log_level, sdk.log_level.upper())
        for name in ("opentelemetry", "rqa_otel"):
            logging.getLogger(name).setLevel(level)
    wanted = ",".join(sdk.propagators) or "none"
    if os.environ.get("OTEL_PROPAGATORS", "").strip() and os.environ["OTEL_PROPAGATORS"] != wanted:
        # opentelemetry.propagate reads the variable when first imported and
        # raises on a name it does not know; the settings already warned
        # about it, so the module (and every instrumentation) sees the
        # validated list.
        os.environ["OTEL_PROPAGATORS"] = wanted
    from opentelemetry import propagate
    from opentelemetry.propagators.composite import CompositePropagator

    loaded = []
    for name in sdk.propagators:
        if name in _API_PROPAGATORS:
            # opentelemetry-api's own, under the names its entry points give
            # them: scanning every installed distribution's entry points
            # for them cost ~10 ms of each start-up.
            loaded.append(_API_PROPAGATORS[name]())
            continue
        from importlib.metadata import entry_points  # here: ~8 ms to import, for other propagators only

        found = list(entry_points(group="opentelemetry_propagator", name=name))
        if not found:
            logging.getLogger("rqa_otel.config").warning(
                "propagator %r (OTEL_PROPAGATORS, sdk.propagators) is not installed "
                "(no opentelemetry_propagator entry point of that name); it is skipped", name,
            )
            continue
        loaded.append(found[0].load()())
    propagate.set_global_textmap(CompositePropagator(loaded))
