"""``setup()`` and the handle it returns: the whole pipeline is assembled here."""

from __future__ import annotations

import atexit
import logging
import os
import multiprocessing.util as multiprocessing_util
import socket
import threading
import time
import uuid
from typing import Any, Callable, Mapping

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
from rqa_otel._util.deadline import call_with_deadline
from rqa_otel.export.exporters import build_exporter, otlp_log_sink, reconnect_otlp
from rqa_otel.export.accounting import ExportCounts
from rqa_otel.export.log_entry import active_span_ids, shaped_emitter, shaped_entry
from rqa_otel.logs.assembly import build_log_pipeline, sampling_rules
from rqa_otel.logs.worker import LogPipeline
from rqa_otel.logs.sdk_bridge import BufferingLogRecordProcessor
from rqa_otel.export.metric_producers import MetricProducer, Producers
from rqa_otel.ops.server import Check, OpsServer, PullMetricReader
from rqa_otel.export.spool import Senders
from rqa_otel.alerts import Alerts
from rqa_otel.resources.registry import register_current_process
from rqa_otel.scrub import Scrubber
from rqa_otel.config.live import LiveSettings
from rqa_otel.settings import Settings

_log = logging.getLogger("rqa_otel")

try:
    from importlib.metadata import version as _version

    VERSION = _version("rqa-otel")
except Exception:  # running from a source tree that is not installed
    VERSION = "0+unknown"


class Telemetry:
    """The handle ``setup()`` returns: providers, a tracer and meter for the
    project's scope, loggers, alerts, ``force_flush()`` and ``shutdown()``."""

    def __init__(self, settings: "Settings | LiveSettings") -> None:
        self.config = settings if isinstance(settings, LiveSettings) else LiveSettings.fixed(settings)
        """The live settings: ``config.current``, ``reload()``, ``subscribe()``,
        ``on_change()`` (rqa_otel.config)."""
        settings = self.config.current
        self.strategy = settings.strategy or names.DEFAULT_STRATEGY
        self.resource = build_resource(settings)
        self.scrubber = Scrubber(extra_patterns=settings.scrub.patterns, allowlist=settings.scrub.allowlist)
        for secret in (settings.export.influxdb.token, settings.export.influxdb.password):
            if secret:  # never exported, whatever a log line or span attribute holds
                self.scrubber.register_secret(secret)
        spool = settings.export.spool
        self.senders = Senders(spool.enabled, spool.directory, spool.max_bytes, settings.export.otlp.timeout_s)
        self._exporters = {
            signal: build_exporter(signal, settings, self.scrubber, self.senders) for signal in ("traces", "metrics")
        }
        self._is_global = False
        self._shut_down = False
        self._lock = threading.Lock()
        self._unregister: Callable[[], None] | None = None  # from the run directory (setup())

        self._producers = Producers(self.resource, InstrumentationScope(names.SCOPE, VERSION))
        if self._exporters["metrics"] is not None:
            self._exporters["metrics"].augment = self._producers.augment
        self._pull_reader = PullMetricReader() if settings.ops.http_port else None
        if self._pull_reader is not None:
            self._pull_reader.augment = self._producers.augment
        self._readiness_checks: dict[str, Check] = {}
        self.tracer_provider = self._build_tracer_provider()
        self.meter_provider = self._build_meter_provider()
        self.tracer = self.tracer_provider.get_tracer(names.SCOPE, VERSION)
        self.meter = self.meter_provider.get_meter(names.SCOPE, VERSION)
        self.alerts = Alerts(self.tracer, self.meter, self.strategy)
        self.alert = self.alerts.emit
        """``alert(name, severity="warning", *, strategy=None, message=None,
        attributes=None, exception=None)``: emit an alert-tagged span and
        count it (see ``rqa_otel.alerts``)."""
        self._log_pipeline: LogPipeline | None = None
        self.logging_handler: logging.Handler | None = None
        if settings.export.logs != "none":
            self._log_pipeline, self.logging_handler = build_log_pipeline(
                settings,
                dict(self.resource.attributes),
                self.strategy,
                self.scrubber,
                on_sink_failure=self._log_sink_failed,
                senders=self.senders,
            )
            self._observe_log_accounting(self._log_pipeline)
        self.logger_provider = self._build_logger_provider()
        self.resources = self._observe_resources()
        """This process's :class:`~rqa_otel.resources.ResourceGauges` (None
        with ``resources.enabled`` off or metrics off)."""
        self._observe_spools()
        self._add_export_checks()
        self._ops = self._start_ops_server() if settings.ops.http_port else None
        self.config.attach(self)
        self._apply_settings_live()
        multiprocessing_util.register_after_fork(self, _flush_at_child_exit)

    @property
    def settings(self) -> Settings:
        """The settings snapshot in force (it changes on a reload)."""
        return self.config.current

    def _apply_settings_live(self) -> None:
        """The settings this handle applies on a reload; every other changed
        setting is reported as needing a restart (docs/settings.md)."""
        built = self.settings.export
        otlp_signals = [signal for signal in ("traces", "metrics", "logs") if built.exporter(signal) == "otlp"]

        def otlp_changed(key: str, old, new) -> None:
            # Only signals that were built with an OTLP exporter: changing
            # the exporter kind itself needs a restart.
            otlp = self.settings.export.otlp
            for signal in otlp_signals:
                if signal == "logs" and self._log_pipeline is not None:
                    sink = otlp_log_sink(otlp, dict(self.resource.attributes), self.senders)
                    self._log_pipeline.replace_primary(sink)
                elif self._exporters.get(signal) is not None:
                    reconnect_otlp(self._exporters[signal], signal, otlp, self.scrubber, self.senders)

        if otlp_signals:
            self.config.on_change("export.otlp", otlp_changed)

        handler = self.logging_handler
        if handler is None:
            return

        def level_changed(key: str, old: str, new: str) -> None:
            handler.setLevel(logging.getLevelName(new))
            if self._is_global and self.settings.logging.capture:
                root = logging.getLogger()
                if root.getEffectiveLevel() > logging.getLevelName(new):
                    root.setLevel(new)

        def sampling_changed(key: str, old, new) -> None:
            handler.set_sampling_rules(sampling_rules(new))

        self.config.on_change("logging.level", level_changed)
        self.config.on_change("logging.sampling.rules", sampling_changed)

    # --- assembly -----------------------------------------------------------
    # A signal whose exporter is `none` gets the API's no-op provider, so a
    # disabled signal costs the strategy nothing, not even span creation.

    def _build_tracer_provider(self) -> trace.TracerProvider:
        exporter = self._exporters["traces"]
        if exporter is None:
            return trace.NoOpTracerProvider()
        provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=self._export_timeout_ms()))
        return provider

    def _build_meter_provider(self) -> metrics.MeterProvider:
        readers: list = []
        if self._exporters["metrics"] is not None:
            readers.append(
                PeriodicExportingMetricReader(
                    self._exporters["metrics"],
                    export_interval_millis=self.settings.export.metric_interval_s * 1000,
                    export_timeout_millis=self._export_timeout_ms(),
                )
            )
        if self._pull_reader is not None:
            readers.append(self._pull_reader)
        if not readers:
            return metrics.NoOpMeterProvider()
        return MeterProvider(resource=self.resource, metric_readers=readers, shutdown_on_exit=False)

    def _build_logger_provider(self) -> otel_logs.LoggerProvider:
        """For code that uses the OTel Logs API directly: its records join the
        stdlib handler's pipeline."""
        if self._log_pipeline is None:
            return otel_logs.NoOpLoggerProvider()
        provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
        provider.add_log_record_processor(BufferingLogRecordProcessor(self._log_pipeline.buffer, self.strategy))
        return provider

    def _observe_log_accounting(self, pipeline: LogPipeline) -> None:
        def dropped(options):
            return [
                Observation(count, {names.LOG_DROP_REASON: reason, names.LOG_LEVEL: level})
                for (reason, level), count in pipeline.drops.snapshot().items()
            ]

        def suppressed(options):
            return [
                Observation(count, {names.LOG_LOGGER: logger_name, names.LOG_LEVEL: logging.getLevelName(levelno)})
                for (logger_name, levelno), count in pipeline.sampler.suppressed_totals().items()
            ]

        self.meter.create_observable_counter(
            names.LOG_RECORDS_DROPPED_COUNTER, [dropped], unit="{record}",
            description="Log records not exported, by reason and level.",
        )
        self.meter.create_observable_counter(
            names.LOG_RECORDS_SUPPRESSED_COUNTER, [suppressed], unit="{record}",
            description="Log records suppressed by sampling, by logger and level.",
        )

    def _observe_resources(self):
        if not self.settings.resources.enabled or self._exporters["metrics"] is None and self._pull_reader is None:
            return None
        from rqa_otel.resources import ResourceGauges, ResourceSampler

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
        senders.events.route_alerts(lambda name, severity, message: self.alert(name, severity, message=message))
        if not senders.spools:
            return
        for spool in senders.spools:
            self.add_readiness_check(f"{names.SPOOL_READINESS}_{spool.signal}", spool.readiness)

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
        self.alert(
            names.LOG_EXPORT_FAILED_ALERT,
            "critical",
            message=f"log records to {destination} are being lost: {error or 'write failed'}",
        )

    def _add_export_checks(self) -> None:
        for signal, exporter in self._exporters.items():
            if exporter is not None:
                self.add_readiness_check(f"{signal}_export", _exporter_check(exporter.counts.destination, exporter))
        if self._log_pipeline is not None:
            self.add_readiness_check("logs_export", self._log_pipeline.readiness)

    def _start_ops_server(self) -> OpsServer:
        liveness = [("process", lambda: (True, "answering"))]
        if self._log_pipeline is not None:
            pipeline = self._log_pipeline
            liveness.append(("log_export_worker", lambda: (pipeline.alive, "running" if pipeline.alive else "stopped")))
        return OpsServer(
            self.settings.ops.http_host, self.settings.ops.http_port, liveness,
            lambda: dict(self._readiness_checks), self._pull_reader, redact=self.scrubber.scrub_text,
        )

    def _export_timeout_ms(self) -> float:
        return self.settings.export.otlp.timeout_s * 1000

    def _install_globally(self) -> None:
        """Make this handle the process's OpenTelemetry and logging default."""
        if self._exporters["traces"] is not None:
            trace.set_tracer_provider(self.tracer_provider)
        if self._exporters["metrics"] is not None:
            metrics.set_meter_provider(self.meter_provider)
        if self._log_pipeline is not None:
            otel_logs.set_logger_provider(self.logger_provider)
        if self.logging_handler is not None and self.settings.logging.capture:
            root = logging.getLogger()
            root.addHandler(self.logging_handler)
            level = logging.getLevelName(self.settings.logging.level)
            if root.getEffectiveLevel() > level:
                root.setLevel(level)
        self._is_global = True
        atexit.register(self.shutdown)

    # --- public API ---------------------------------------------------------

    def get_logger(self, name: str | None = None) -> logging.Logger:
        """A stdlib logger whose records reach this handle's log exporter.

        After ``setup()`` with log capture on, every logger does; a handle
        built with ``set_global=False`` attaches its handler to this logger.
        """
        logger = logging.getLogger(name or self.strategy)
        if self.logging_handler is not None and not (self._is_global and self.settings.logging.capture):
            if self.logging_handler not in logger.handlers:
                logger.addHandler(self.logging_handler)
            level = logging.getLevelName(self.settings.logging.level)
            if logger.getEffectiveLevel() > level:
                logger.setLevel(level)
        return logger

    def log_event(
        self, name: str, message: str, attributes: dict[str, Any], time_ns: int | None = None, level: int = logging.INFO
    ) -> None:
        """A log record straight into the logging pipeline, without stdlib
        logging: for events recorded at high rates (trades). ``name`` is its
        logger/scope name; it is correlated with the active span. Attributes
        should include the quant attributes; for an event registered as an
        ``EventShape`` (rqa_otel/_internal/logs/entry.py) they may be the
        tuple of its values."""
        if self._log_pipeline is None:
            return
        if attributes.__class__ is tuple:  # the values of a registered EventShape
            entry = shaped_entry(time.time_ns() if time_ns is None else time_ns, level, name, message, attributes)
        else:
            entry = (time.time_ns() if time_ns is None else time_ns, level, name, message, attributes, *active_span_ids())
        self._log_pipeline.buffer.put(entry)

    def event_emitter(self, name: str, level: int = logging.INFO) -> Callable[[str, tuple, int], None]:
        """``emit(message, values, time_ns)``: log_event() for an event
        registered as an ``EventShape``, with every per-call check done once
        here (a trade costs a few microseconds in all)."""
        if self._log_pipeline is None:
            return lambda message, values, time_ns: None
        return shaped_emitter(self._log_pipeline.buffer.put, name, level)

    def add_metric_producer(self, producer: MetricProducer) -> None:
        """``producer() -> [Metric]`` runs at each collection; its metrics are
        exported with the SDK's (for aggregates kept off the SDK's hot path)."""
        self._producers.add(producer)

    def add_readiness_check(self, name: str, check: Check) -> None:
        """Make /ready depend on ``check() -> (ok, reason)`` (a circuit breaker,
        a quota); the reason is shown, so it must hold no secret."""
        self._readiness_checks[name] = check

    @property
    def ops_address(self) -> tuple[str, int] | None:
        """(host, port) of /health, /ready and /metrics, when they are on."""
        return self._ops.address if self._ops is not None else None

    def export_counts(self) -> list[ExportCounts]:
        """What each signal's exporter has sent or failed to send so far."""
        counts = [exporter.counts for exporter in self._exporters.values() if exporter is not None]
        if self._log_pipeline is not None:
            counts.extend(self._log_pipeline.export_counts())
        return counts

    def register_secret(self, value: str) -> None:
        """Redact this exact value wherever it appears in exported logs and spans
        (the config vault registers every value it decrypts)."""
        self.scrubber.register_secret(value)

    def log_drops(self) -> dict[tuple[str, str], int]:
        """Log records not exported so far, by (reason, level name)."""
        return self._log_pipeline.drops.snapshot() if self._log_pipeline is not None else {}

    def force_flush(self, timeout_s: float | None = None) -> bool:
        """Export everything buffered; True if all of it went out in time."""
        timeout_s = self.settings.export.shutdown_timeout_s if timeout_s is None else timeout_s

        def flush() -> bool:
            logs_done = self._log_pipeline.flush(timeout_s) if self._log_pipeline is not None else True
            results = [p.force_flush(int(timeout_s * 1000)) for p in self._sdk_providers()]
            return logs_done and all(result is not False for result in results)

        return call_with_deadline(flush, timeout_s, "telemetry flush")

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush and stop exporting; returns within ``timeout_s`` (default
        ``export.shutdown_timeout_s``) even when the back-end is unreachable.
        Safe to call more than once."""
        with self._lock:
            if self._shut_down:
                return True
            self._shut_down = True
        timeout_s = self.settings.export.shutdown_timeout_s if timeout_s is None else timeout_s
        if self.logging_handler is not None:
            for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
                if isinstance(logger, logging.Logger) and self.logging_handler in logger.handlers:
                    logger.removeHandler(self.logging_handler)
        if self._is_global:
            atexit.unregister(self.shutdown)
        if self._ops is not None:
            self._ops.shutdown()
        self.config.close()
        if self._unregister is not None:
            self._unregister()

        def stop() -> bool:
            # Logs and traces first: the metrics' last collection counts
            # what they dropped.
            logs_done = self._log_pipeline.shutdown(timeout_s) if self._log_pipeline is not None else True
            for provider in self._sdk_providers():
                provider.shutdown()
            if self.resources is not None:
                self.resources.sampler.close()
            return logs_done

        return call_with_deadline(stop, timeout_s, "telemetry shutdown")

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    def _sdk_providers(self) -> list[Any]:
        providers = (self.tracer_provider, self.logger_provider, self.meter_provider)
        return [p for p in providers if hasattr(p, "force_flush")]


def _exporter_check(destination: str, exporter) -> Check:
    def check() -> tuple[bool, str]:
        counts = exporter.counts
        if exporter.failing:
            return False, f"exporting to {destination} is failing ({counts.failed} lost so far)"
        return True, f"{counts.exported} exported to {destination}"

    return check


def _flush_at_child_exit(handle: Telemetry) -> None:
    """In a multiprocessing child: it ends with os._exit(), so no atexit hook
    runs, only multiprocessing's own finalizers; the flush goes there."""
    if not handle.is_shut_down:
        multiprocessing_util.Finalize(handle, handle.force_flush, exitpriority=100)


def _register_child(handle: Telemetry) -> None:
    registration = register_current_process(handle.settings)
    handle._unregister = registration[0] if registration is not None else None


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


def _report_own_problems_on_stderr() -> None:
    """rqa-otel's own warnings (an exporter failing, a second setup()) go to
    stderr and never into the telemetry pipeline, where a failing exporter
    would feed on its own complaints."""
    own = logging.getLogger("rqa_otel")
    if not own.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("rqa-otel: %(levelname)s %(message)s"))
        own.addHandler(handler)
        own.setLevel(logging.INFO)
        own.propagate = False


_global: Telemetry | None = None
_global_lock = threading.Lock()


def setup(
    settings_file: str | os.PathLike[str] | None = None,
    *,
    strategy: str | None = None,
    service_name: str | None = None,
    environment: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    set_global: bool = True,
) -> Telemetry:
    """Configure traces, metrics and logs in one call and return the handle.

    Settings are layered: packaged defaults < ``settings_file`` (or
    ``RQA_SETTINGS_FILE``) < ``OTEL_*`` < ``RQA_*`` < these arguments
    (docs/settings.md). Bad settings raise ``SettingsError`` before anything
    is installed.

    With ``set_global`` (the default) the providers become the process's
    OpenTelemetry globals, stdlib logging is captured, and telemetry is
    flushed at exit. Calling it again returns the same handle; arguments that
    would change it are reported in a warning, since OpenTelemetry's global
    providers can be set only once per process. ``set_global=False`` builds
    an independent handle (for tests, or a second pipeline).
    """
    global _global
    arguments = dict(overrides or {})
    for key, value in (("strategy", strategy), ("service.name", service_name), ("service.environment", environment)):
        if value is not None:
            arguments[key] = value
    live = LiveSettings.from_layers(settings_file, arguments)
    settings = live.current
    _report_own_problems_on_stderr()
    if not set_global:
        handle = Telemetry(live)
        if settings.config.watch:
            live.watch()
        return handle
    with _global_lock:
        if _global is not None:
            if settings != _global.settings:
                _log.warning(
                    "rqa_otel.setup() was called again with different settings; the first configuration stays "
                    "in effect (OpenTelemetry's global providers can be set only once per process)"
                )
            return _global
        handle = Telemetry(live)
        handle._install_globally()
        if settings.config.watch:
            live.watch()
            if settings.config.sighup:
                live.install_sighup()
        registration = register_current_process(settings)  # for the host agent
        if registration is not None:
            handle._unregister, registry = registration
            handle.add_readiness_check(names.QUOTA_READINESS, registry.quota_check(handle.strategy))
            # A multiprocessing worker counts for the strategy too.
            multiprocessing_util.register_after_fork(handle, _register_child)
        _global = handle
        return handle


def current() -> Telemetry | None:
    """The handle installed by ``setup()``, if any."""
    return _global
