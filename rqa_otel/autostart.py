"""Telemetry for a program that does not call ``setup()`` itself.

Used by ``rqa-otel run`` (through sitecustomize) and by the
``opentelemetry_configurator`` entry point (``opentelemetry-instrument``).
Settings come from the environment: ``RQA_*``, ``OTEL_*`` and
``RQA_SETTINGS_FILE``.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import multiprocessing
import os
import signal
import sys
from types import ModuleType
from typing import Callable

from rqa_otel.telemetry import Telemetry, flush_then_die_on_sigterm, report_own_problems_on_stderr, setup


def start() -> Telemetry:
    # Only rqa-otel's warnings on stderr: the program's output stays its own.
    report_own_problems_on_stderr(logging.WARNING)
    telemetry = setup()
    if "--multiprocessing-fork" in sys.argv:
        # A spawned multiprocessing worker: terminate() must not wait on it.
        flush_then_die_on_sigterm(telemetry.flush_before_exit)
    else:
        _flush_on_sigterm(telemetry)
    _instrument_frameworks_when_imported()
    # What exists now (the modules imported at start-up, the pipeline) lives
    # as long as the process: the cyclic GC need not walk it again, as for a
    # pre-fork server. Each full collection then skips it, and so does the
    # interpreter's exit (~25 ms with these modules). The program's own
    # objects, all made later, are collected as before (docs/architecture.md).
    gc.freeze()
    return telemetry


def _instrument_frameworks_when_imported() -> None:
    """backtrader is instrumented when the strategy imports it, so a program
    that does not use it pays nothing (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
    may name it to opt out)."""
    disabled = {name.strip() for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    if "backtrader" in disabled:
        return

    def instrument(module) -> None:  # noqa: ARG001
        try:
            # Loaded when the strategy imports backtrader, never before.
            from rqa_otel.instrumentation.backtrader import instrument_backtrader

            instrument_backtrader()
        except Exception as exc:  # never stops the strategy
            print(f"rqa-otel: backtrader is not instrumented: {exc}", file=sys.stderr)

    when_imported("backtrader", instrument)


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook(module)`` once module ``name`` has been imported (at
    once if it already is). Our own sys.meta_path finder, not wrapt's
    post-import hooks: wrapt 2 imports asyncio, ~20 ms of every start-up."""
    if name in sys.modules:
        hook(sys.modules[name])
        return
    sys.meta_path.insert(0, _AfterImport(name, hook))


class _AfterImport:
    """A finder that finds nothing itself: for its one module it asks the
    other finders, and has the module's loader call the hook after the
    module has run (not after a failed import, which may be tried again)."""

    def __init__(self, name: str, hook: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.hook = hook
        self._finding = False  # the module's import lock keeps this to one thread

    def find_spec(self, fullname: str, path=None, target=None):  # noqa: ARG002 (the finder protocol)
        if fullname != self.name or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _ThenHook(spec.loader, self)
        return spec

    def done(self, module: ModuleType) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        self.hook(module)


class _ThenHook:
    """The module's own loader, then the hook; the module keeps its own
    loader afterwards."""

    def __init__(self, loader, finder: _AfterImport) -> None:
        self.loader = loader
        self.finder = finder

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.finder.done(sys.modules.get(module.__name__, module))


def _flush_on_sigterm(telemetry: Telemetry) -> None:
    """Turn the first SIGTERM into SystemExit so that open spans end and the
    exit hook flushes; a strategy's own SIGTERM handler is left alone.
    A multiprocessing worker (Pool.terminate(), `with Pool()`) flushes and
    dies of the signal instead: an exception raised into it could be
    swallowed and leave its parent waiting for it."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    installed_by = os.getpid()

    def terminate(signum, frame):  # noqa: ARG001
        # A second SIGTERM, say while a strategy's `except BaseException`
        # ignores the first, terminates at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if telemetry.is_shut_down:
            return  # already flushing at exit, within its own deadline
        if os.getpid() != installed_by:
            # A forked child that has not installed its own handler yet: it
            # has recorded nothing, and dies as it would without telemetry.
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if multiprocessing.parent_process() is not None:
            # A worker whose main thread got here (others use the watcher
            # thread of rqa_otel.telemetry.flush_then_die_on_sigterm).
            try:
                telemetry.flush_before_exit()
            finally:
                os.kill(os.getpid(), signal.SIGTERM)
            return
        sys.exit(128 + signal.SIGTERM)

    # A multiprocessing worker forked from here replaces it with one that
    # flushes, then dies of the signal (rqa_otel.telemetry).
    terminate.rqa_flushes = True  # type: ignore[attr-defined]

    try:
        signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (embedded interpreters)
        pass
