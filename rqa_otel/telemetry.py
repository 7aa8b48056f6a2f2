"""``setup()`` and the handle it returns.

The pipeline behind the handle (providers, exporters, the log pipeline,
self-metrics, readiness, the ops server, reload reactions) is assembled in
``rqa_otel.pipeline``; this module is the public face over it: the handle's
API, installing it as the process's OpenTelemetry and logging default, and
the hooks that keep it right across fork() and at exit.
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing
import multiprocessing.util as multiprocessing_util
import os
import signal
import threading
import time
import uuid
import warnings
import weakref
from typing import Any, Callable, Mapping

from opentelemetry import _logs as otel_logs
from opentelemetry import metrics, trace

from rqa_otel import names
from rqa_otel._util.deadline import call_with_deadline
from rqa_otel.config.live import LiveSettings
from rqa_otel.config.model import Settings
from rqa_otel.export.accounting import ExportCounts
from rqa_otel.export.log_entry import active_span_ids, shaped_emitter, shaped_entry
from rqa_otel.export.metric_producers import MetricProducer
from rqa_otel.export.notices import printable
from rqa_otel.ops.readiness import Check
from rqa_otel.pipeline import VERSION, Pipeline, install_sdk_globals
from rqa_otel.resources import ResourceGauges
from rqa_otel.resources.registry import register_current_process

__all__ = ["VERSION", "Telemetry", "current", "setup"]

_log = logging.getLogger("rqa_otel")


class Telemetry:
    """The handle ``setup()`` returns: providers, a tracer and meter for the
    project's scope, loggers, alerts, ``force_flush()`` and ``shutdown()``."""

    def __init__(self, settings: "Settings | LiveSettings") -> None:
        self.live_settings = settings if isinstance(settings, LiveSettings) else LiveSettings.fixed(settings)
        """The live settings: ``live_settings.current``, ``reload()``,
        ``subscribe()``, ``on_change()`` (rqa_otel.config)."""
        pipeline = self._pipeline = Pipeline(self.live_settings)
        self.strategy = pipeline.strategy
        self.resource = pipeline.resource
        """The OTel Resource every signal carries (service, host, process, strategy)."""
        self.scrubber = pipeline.scrubber
        self.senders = pipeline.senders
        self.tracer_provider = pipeline.tracer_provider
        self.meter_provider = pipeline.meter_provider
        self.logger_provider = pipeline.logger_provider
        self.tracer = pipeline.tracer
        self.meter = pipeline.meter
        self.alerts = pipeline.alerts
        self.alert = self.alerts.emit
        """``alert(name, severity="warning", *, strategy=None, message=None,
        attributes=None, exception=None)``: emit an alert-tagged span and
        count it (see ``rqa_otel.alerts``)."""
        self.logging_handler: logging.Handler | None = pipeline.logging_handler
        self._log_worker = pipeline.log_worker
        self.resource_gauges: ResourceGauges | None = pipeline.resource_gauges
        """This process's :class:`~rqa_otel.resources.ResourceGauges` (None
        with ``resources.enabled`` off or metrics off)."""
        self._is_global = False
        self._shut_down = False
        self._stopped = threading.Event()  # set when shutdown() has done its work
        self._lock = threading.Lock()
        self._unregister: Callable[[], None] | None = None  # from the run directory (setup())
        self._token = uuid.uuid4().hex
        _handles[self._token] = self
        self.live_settings.attach(self)
        pipeline.react_to_reloads(lambda: self._is_global and self.settings.logging.capture)
        multiprocessing_util.register_after_fork(self, _flush_at_child_exit)

    def __reduce__(self):
        # A handle passed to code that multiprocessing pickles (backtrader's
        # TelemetryAnalyzer(telemetry=...) under optstrategy with maxcpus > 1)
        # stands for the same handle in a forked worker, and for the
        # worker's default one elsewhere.
        return (_handle_in_this_process, (self._token,))

    @property
    def settings(self) -> Settings:
        """The settings snapshot in force (it changes on a reload)."""
        return self.live_settings.current

    @property
    def config(self) -> LiveSettings:
        """Deprecated name of :attr:`live_settings` (it read as the settings'
        own ``config`` section)."""
        warnings.warn("Telemetry.config is deprecated; use Telemetry.live_settings", DeprecationWarning, stacklevel=2)
        return self.live_settings

    @property
    def resources(self) -> ResourceGauges | None:
        """Deprecated name of :attr:`resource_gauges` (it read as
        :attr:`resource`, the OTel Resource)."""
        warnings.warn(
            "Telemetry.resources is deprecated; use Telemetry.resource_gauges", DeprecationWarning, stacklevel=2
        )
        return self.resource_gauges

    def _install_globally(self) -> None:
        """Make this handle the process's OpenTelemetry and logging default."""
        pipeline = self._pipeline
        if pipeline.exporters["traces"] is not None:
            trace.set_tracer_provider(self.tracer_provider)
        if pipeline.exporters["metrics"] is not None or pipeline.pull_reader is not None:
            metrics.set_meter_provider(self.meter_provider)
        install_sdk_globals(self.settings)
        if pipeline.log_worker is not None:
            otel_logs.set_logger_provider(self.logger_provider)
        if self.logging_handler is not None and self.settings.logging.capture:
            root = logging.getLogger()
            root.addHandler(self.logging_handler)
            self.logging_handler.stands_in_for_last_resort = True  # type: ignore[attr-defined]
            _keep_basic_config_working(self.logging_handler)
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
        ``EventShape`` (rqa_otel/export/log_entry.py) they may be the
        tuple of its values."""
        if self._log_worker is None:
            return
        if attributes.__class__ is tuple:  # the values of a registered EventShape
            entry = shaped_entry(time.time_ns() if time_ns is None else time_ns, level, name, message, attributes)
        else:
            entry = (time.time_ns() if time_ns is None else time_ns, level, name, message, attributes, *active_span_ids())
        self._log_worker.buffer.put(entry)

    def event_emitter(self, name: str, level: int = logging.INFO) -> Callable[[str, tuple, int], None]:
        """``emit(message, values, time_ns)``: log_event() for an event
        registered as an ``EventShape``, with every per-call check done once
        here (a trade costs a few microseconds in all)."""
        if self._log_worker is None:
            return lambda message, values, time_ns: None
        return shaped_emitter(self._log_worker.buffer.put, name, level)

    def add_metric_producer(self, producer: MetricProducer) -> None:
        """``producer() -> [Metric]`` runs at each collection; its metrics are
        exported with the SDK's (for aggregates kept off the SDK's hot path)."""
        self._pipeline.producers.add(producer)

    def add_readiness_check(self, name: str, check: Check) -> None:
        """Make /ready depend on ``check() -> (ok, reason)`` (a circuit breaker,
        a quota); the reason is shown, so it must hold no secret."""
        self._pipeline.readiness_checks[name] = check

    @property
    def ops_address(self) -> tuple[str, int] | None:
        """(host, port) of /health, /ready and /metrics, when they are on."""
        ops = self._pipeline.ops
        return ops.address if ops is not None else None

    def export_counts(self) -> list[ExportCounts]:
        """What each signal's exporter has sent or failed to send so far."""
        counts = [exporter.counts for built in self._pipeline.exporter_lists.values() for _, exporter in built]
        if self._log_worker is not None:
            counts.extend(self._log_worker.export_counts())
        return counts

    def register_secret(self, value: str) -> None:
        """Redact this exact value wherever it appears in exported logs and spans
        (the config vault registers every value it decrypts)."""
        self.scrubber.register_secret(value)

    def log_drops(self) -> dict[tuple[str, str], int]:
        """Log records not exported so far, by (reason, level name)."""
        return self._log_worker.drops.snapshot() if self._log_worker is not None else {}

    def force_flush(self, timeout_s: float | None = None) -> bool:
        """Export everything buffered; True if all of it went out in time."""
        timeout_s = self.settings.export.shutdown_timeout_s if timeout_s is None else timeout_s

        def flush() -> bool:
            logs_done = self._log_worker.flush(timeout_s) if self._log_worker is not None else True
            results = [p.force_flush(int(timeout_s * 1000)) for p in self._pipeline.sdk_providers()]
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
        # The log worker exports what is buffered while the rest stops
        # (each stop waits for a thread to wake: one after another, the
        # waits added up to most of a short program's shutdown).
        if self._log_worker is not None:
            self._log_worker.begin_shutdown()
        if self._pipeline.ops is not None:
            self._pipeline.ops.shutdown()
        self.live_settings.close()

        def stop() -> bool:
            # Logs, then traces, then metrics: a log export refused at the
            # end raises an alert span, and the metrics' last collection
            # counts what the others dropped.
            logs_done = self._log_worker.shutdown(timeout_s) if self._log_worker is not None else True
            for provider in self._pipeline.sdk_providers():  # tracer, logger, meter (the no-op ones left out)
                provider.shutdown()
            if self.resource_gauges is not None:
                self.resource_gauges.sampler.close()
            return logs_done

        try:
            return call_with_deadline(stop, timeout_s, "telemetry shutdown")
        finally:
            # Last: its file operations, beside the log worker's last
            # export, only made both wait for the GIL.
            try:
                if self._unregister is not None:
                    self._unregister()
            finally:
                self._stopped.set()

    def flush_before_exit(self, timeout_s: float | None = None) -> bool:
        """For a process about to end at once (a pool worker's SIGTERM):
        what it recorded goes out first. A shutdown already under way (the
        signal came while the exit hook ran) is waited for, not raced: a
        flush beside it finds processors already shut, returns at once, and
        the exit that follows would cut the shutdown's last export short."""
        timeout_s = min(self.settings.export.shutdown_timeout_s, 5.0) if timeout_s is None else timeout_s
        flushed = self.force_flush(timeout_s) if not self.is_shut_down else True
        if self.is_shut_down:  # before, or while flushing
            return self._stopped.wait(timeout_s) and flushed
        return flushed

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down


_handles: "weakref.WeakValueDictionary[str, Telemetry]" = weakref.WeakValueDictionary()


def _handle_in_this_process(token: str) -> Telemetry:
    found = _handles.get(token)
    return found if found is not None else (current() or setup())


def _flush_at_child_exit(handle: Telemetry) -> None:
    """In a multiprocessing child: it ends with os._exit(), so no atexit hook
    runs, only multiprocessing's own finalizers; the flush goes there. A
    pool ended by terminate() (``with Pool()``, or a pool closed without
    join() at the parent's exit) stops its workers with SIGTERM: they
    flush first."""
    if not handle.is_shut_down:
        multiprocessing_util.Finalize(handle, handle.force_flush, exitpriority=100)
        flush_then_die_on_sigterm(handle.flush_before_exit)


def flush_then_die_on_sigterm(flush: Callable[[], Any]) -> None:
    """Make SIGTERM flush (bounded by its own timeout), then end the process
    (exit status 143). A program's own SIGTERM handler is left alone.

    A Python signal handler runs in the main thread only, and only when the
    thread that received the signal interrupts it: an idle pool worker
    blocked on its task queue's lock, with telemetry's threads there to
    take the signal, would never run it, and its parent would wait for it
    forever. So the work is done by a thread of its own, woken through
    signal.set_wakeup_fd()."""
    current_handler = signal.getsignal(signal.SIGTERM)
    if current_handler is not signal.SIG_DFL and not getattr(current_handler, "rqa_flushes", False):
        return
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        return
    try:
        os.set_blocking(write_fd, False)
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread
        os.close(read_fd)
        os.close(write_fd)
        return
    if previous != -1:  # the program's own (asyncio's): left as it was
        signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)
        return
    owner = os.getpid()

    def watch() -> None:
        while True:
            try:
                received = os.read(read_fd, 64)
            except OSError:
                return
            if not received:
                return
            if signal.SIGTERM in received:
                try:
                    flush()
                finally:
                    os._exit(128 + signal.SIGTERM)

    watcher = threading.Thread(target=watch, name="rqa-otel SIGTERM", daemon=True)

    def on_sigterm(signum, frame):  # noqa: ARG001
        if os.getpid() == owner and watcher.is_alive():
            return  # the watcher flushes and ends the process
        # A forked child of this process (no watcher there): as without telemetry.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    on_sigterm.rqa_flushes = True  # type: ignore[attr-defined]
    watcher.start()  # first: a SIGTERM from the moment the handler is in is the watcher's
    signal.signal(signal.SIGTERM, on_sigterm)


def _keep_basic_config_working(handler: logging.Handler) -> None:
    """logging.basicConfig() does nothing once the root logger has a handler,
    so a program that calls it after setup() (or under `rqa-otel run`) would
    lose its console. It is wrapped to act as if our handler were not
    there: the program's configuration applies, and our handler stays."""
    original = logging.basicConfig
    if getattr(original, "rqa_original", None) is not None:
        return

    @functools.wraps(original)
    def basic_config(**kwargs):
        root = logging.getLogger()
        ours = [h for h in root.handlers if getattr(h, "stands_in_for_last_resort", False)]
        for h in ours:
            root.removeHandler(h)
        try:
            return original(**kwargs)
        finally:
            for h in ours:
                if h not in root.handlers:
                    root.addHandler(h)

    basic_config.rqa_original = original  # type: ignore[attr-defined]
    logging.basicConfig = basic_config


def _register_child(handle: Telemetry) -> None:
    registration = register_current_process(handle.settings)
    handle._unregister = registration[0] if registration is not None else None


def report_own_problems_on_stderr(level: int = logging.INFO) -> None:
    """rqa-otel's own warnings (an exporter failing, a second setup()) go to
    stderr and never into the telemetry pipeline, where a failing exporter
    would feed on its own complaints. The first call decides the level
    (`rqa-otel run` prints warnings only: the program's console is its own)."""
    own = logging.getLogger("rqa_otel")
    if not own.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_StderrFormatter("rqa-otel: %(levelname)s %(message)s"))
        own.addHandler(handler)
        own.setLevel(level)
        own.propagate = False


class _StderrFormatter(logging.Formatter):
    """Every line rqa-otel prints is one line, and carries no URL credentials:
    a message may quote a receiver's answer or an endpoint, and neither may
    write terminal escapes, forge a line of its own, or show a password."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message, 4000)
        return super().formatMessage(record)


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
    app_validators: Any = None,
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

    ``app_validators``: the user's check of the application's own settings
    (``settings.app``; a callable or dynaconf Validators), at start and at
    every reload (docs/settings.md, "Application settings").
    """
    global _global
    arguments = dict(overrides or {})
    for key, value in (("strategy", strategy), ("service.name", service_name), ("service.environment", environment)):
        if value is not None:
            arguments[key] = value
    live = LiveSettings.from_layers(settings_file, arguments, app_validators=app_validators)
    settings = live.current
    report_own_problems_on_stderr()
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
        if multiprocessing.parent_process() is not None:
            # Set up inside a multiprocessing worker (spawn, or a worker's
            # first use): a forked worker ends with os._exit(), no atexit.
            _flush_at_child_exit(handle)
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
