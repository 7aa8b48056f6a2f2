"""Telemetry for a program that does not call ``setup()`` itself.

Used by ``rqa-otel run`` (through sitecustomize) and by the
``opentelemetry_configurator`` entry point (``opentelemetry-instrument``).
Settings come from the environment: ``RQA_*``, ``OTEL_*`` and
``RQA_SETTINGS_FILE``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys

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
    return telemetry


def _instrument_frameworks_when_imported() -> None:
    """backtrader is instrumented when the strategy imports it, so a program
    that does not use it pays nothing (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
    may name it to opt out)."""
    from wrapt import register_post_import_hook

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

    register_post_import_hook(instrument, "backtrader")


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
