"""backtrader, instrumented: orders, fills and the broker's value as telemetry.

    import rqa_otel
    rqa_otel.instrument_backtrader()      # or run the script under `rqa-otel run`
    cerebro = backtrader.Cerebro()        # unmodified from here on
    ...
    cerebro.run()

or, without patching anything, one analyzer per Cerebro:

    cerebro.addanalyzer(rqa_otel.instrumentation.backtrader.TelemetryAnalyzer)

Each ``Cerebro.run()`` becomes one ``rqa.backtest`` run span (strategy class
and parameters on it); inside it, for every strategy:
- each order notification at the detail level of
  ``instrumentation.backtrader.orders`` (default ``fills``: Partial,
  Completed, Canceled, Expired, Margin, Rejected; ``all`` adds Submitted and
  Accepted): the ``rqa.orders`` counter by strategy, side and status, and
  an ``rqa.order`` log event, except (at ``fills``) for Partial and
  Completed, whose trade events name the order;
- each execution of an order (a fill, partial or whole):
  ``BacktestMonitor.record_trade`` at the bar's simulated time, with the
  order's id and type;
- the first bar of each trading day, and the end: ``record_portfolio`` with
  the broker's value, cash and the strategy's positions.

With ``optstrategy`` every combination is a run span of its own, with its
parameters; with ``maxcpus > 1`` each is reported by the pool worker that
ran it (its own ``process.pid``). The analyzer is a module-level class
(``backtrader_analyzer``), so the optimization can pickle it.

Like the opentelemetry-python-contrib instrumentors: ``instrument()`` and
``uninstrument()`` are idempotent, nothing happens when backtrader is not
installed, and a failure inside the telemetry is logged, never raised into
the strategy.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from contextlib import ExitStack
from typing import Collection

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from rqa_otel import names

_log = logging.getLogger("rqa_otel.instrumentation.backtrader")
_INSTRUMENTS = ("backtrader >= 1.9",)


class BacktraderInstrumentor(BaseInstrumentor):
    """``BacktraderInstrumentor().instrument(telemetry=None)``: every
    ``Cerebro.run()`` from then on is a run span and gets a TelemetryAnalyzer."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    def _instrument(self, **kwargs) -> None:
        import backtrader

        telemetry = kwargs.get("telemetry")
        original = backtrader.Cerebro.run

        @functools.wraps(original)
        def run(cerebro, *args, **run_kwargs):
            try:
                stack = _start_run(cerebro, telemetry)
            except Exception:
                _log.warning("backtrader telemetry is off for this run", exc_info=True)
                return original(cerebro, *args, **run_kwargs)
            with stack:
                return original(cerebro, *args, **run_kwargs)

        run._rqa_original = original
        backtrader.Cerebro.run = run

    def _uninstrument(self, **kwargs) -> None:
        import backtrader

        original = getattr(backtrader.Cerebro.run, "_rqa_original", None)
        if original is not None:
            backtrader.Cerebro.run = original


def _start_run(cerebro, telemetry) -> ExitStack:
    """Add the analyzer (unless the script added one) and, for a plain run,
    open the run span. An optimization (``optstrategy``) opens none here:
    each combination is its own run, opened by its analyzer, in whichever
    process runs it."""
    from rqa_otel.instrumentation import backtrader_analyzer as analyzer

    stack = ExitStack()
    if not any(isinstance(entry[0], type) and issubclass(entry[0], analyzer.AnalyzerMarker) for entry in cerebro.analyzers):
        # No telemetry keyword when there is no handle: the analyzer's
        # parameters travel to pool workers, and the default is found there.
        if telemetry is None:
            cerebro.addanalyzer(analyzer.TelemetryAnalyzer)
        else:
            cerebro.addanalyzer(analyzer.TelemetryAnalyzer, telemetry=telemetry)
    if getattr(cerebro, "_dooptimize", False) or not cerebro.strats:
        return stack
    # cerebro.strats: after addstrategy(), one list [(class, args, kwargs)]
    # per strategy (optstrategy() adds an iterator, handled above).
    entries = [entry[0] for entry in cerebro.strats if isinstance(entry, list) and entry]
    if not entries:
        return stack
    first_class, _, first_kwargs = entries[0]
    class_name = "+".join(dict.fromkeys(entry[0].__name__ for entry in entries))
    reporting = analyzer.reporting_for(analyzer.telemetry_or_default(telemetry))
    name = reporting.configured_strategy or class_name
    stack.enter_context(reporting.monitor.run(
        name, analyzer.class_parameters(first_class, first_kwargs), attributes={names.STRATEGY_CLASS: class_name}
    ))
    cerebro._rqa_run_open = True
    stack.callback(setattr, cerebro, "_rqa_run_open", False)
    return stack


def __getattr__(name: str):
    # TelemetryAnalyzer subclasses backtrader.Analyzer, so it lives in a
    # module that imports backtrader, loaded on first access.
    if name == "TelemetryAnalyzer":
        if importlib.util.find_spec("backtrader") is None:
            raise AttributeError("TelemetryAnalyzer needs backtrader (pip install backtrader)")
        from rqa_otel.instrumentation.backtrader_analyzer import TelemetryAnalyzer

        return TelemetryAnalyzer
    raise AttributeError(name)


def instrument_backtrader(telemetry=None) -> bool:
    """Instrument backtrader for this process; True if it is (now or already),
    False when backtrader is not installed."""
    if importlib.util.find_spec("backtrader") is None:
        return False
    instrumentor = BacktraderInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(telemetry=telemetry)
    return instrumentor.is_instrumented_by_opentelemetry
