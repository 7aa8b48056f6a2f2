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
- each order notification: an ``rqa.order`` log event and the ``rqa.orders``
  counter by strategy, side and status (Submitted, Accepted, Partial,
  Completed, Canceled, Expired, Margin, Rejected);
- each execution of an order (a fill, partial or whole):
  ``BacktestMonitor.record_trade`` at the bar's simulated time;
- each bar, after the broker has settled it: ``record_portfolio`` with the
  broker's value, cash and the strategy's positions.

Like the opentelemetry-python-contrib instrumentors: ``instrument()`` and
``uninstrument()`` are idempotent, nothing happens when backtrader is not
installed, and a failure inside the telemetry is logged, never raised into
the strategy.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import logging
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Collection

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from rqa_otel import names
from rqa_otel.telemetry import current, setup
from rqa_otel.trading.monitor import BacktestMonitor, timestamp_ns

_log = logging.getLogger("rqa_otel.instrumentation.backtrader")
_INSTRUMENTS = ("backtrader >= 1.9",)


@dataclass
class _Reporting:
    """What one Telemetry handle reports backtrader through: its one
    BacktestMonitor (instruments can be registered once) and orders counter."""

    telemetry: Any
    monitor: Any
    orders: Any


_reporting: dict[int, _Reporting] = {}
_reporting_lock = threading.Lock()


def reporting_for(telemetry) -> _Reporting:
    with _reporting_lock:
        found = _reporting.get(id(telemetry))
        if found is None or found.telemetry is not telemetry:
            orders = telemetry.meter.create_counter(
                names.ORDERS_COUNTER, unit="{order}",
                description="Order notifications from the broker, by strategy, side and status.",
            )
            found = _reporting[id(telemetry)] = _Reporting(telemetry, BacktestMonitor(telemetry), orders)
        return found


def _telemetry(telemetry=None):
    if telemetry is not None:
        return telemetry
    return current() or setup()


def _guarded(method):
    """Telemetry never breaks the strategy: errors are logged once per method."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception:
            if method.__name__ not in _failed:
                _failed.add(method.__name__)
                _log.warning("backtrader telemetry failed in %s; the strategy goes on", method.__name__, exc_info=True)
            return None

    return guarded


_failed: set[str] = set()


def _analyzer_class():
    import backtrader

    class TelemetryAnalyzer(backtrader.Analyzer, _AnalyzerMarker):
        """Reports the orders, fills and broker value of its strategy.

        ``telemetry``: a handle (default: the global one, set up if needed).
        Opens the run span itself unless ``instrument()`` already did."""

        params = (("telemetry", None),)

        @_guarded
        def start(self):
            self._reporting = reporting_for(_telemetry(self.p.telemetry))
            self._monitor = self._reporting.monitor
            self._strategy_name = type(self.strategy).__name__
            self._datas = {data: _data_name(data, index) for index, data in enumerate(self.strategy.datas)}
            self._stack = ExitStack()
            if not getattr(self.strategy.env, "_rqa_run_open", False):
                self._stack.enter_context(self._monitor.run(self._strategy_name, _parameters(self.strategy)))

        @_guarded
        def stop(self):
            # When cerebro.run() returns, the run's trades are in the journal.
            self._monitor.flush()
            self._stack.close()

        @_guarded
        def notify_order(self, order):
            status = order.getstatusname()
            side = "buy" if order.isbuy() else "sell"
            symbol = self._datas.get(order.data) or _data_name(order.data, 0)
            self._reporting.orders.add(
                1, {names.STRATEGY: self._strategy_name, names.TRADE_SIDE: side, names.ORDER_STATUS: status}
            )
            bar_time = _bar_time(self.strategy)
            attributes = {
                names.STRATEGY: self._strategy_name, names.STOCK: symbol, names.SIGNAL: side.upper(),
                names.ORDER_ID: order.ref, names.ORDER_STATUS: status, names.TRADE_SIDE: side,
                names.ORDER_TYPE: order.getordername(), names.ORDER_SIZE: float(abs(order.created.size)),
            }
            if order.created.price:
                attributes[names.ORDER_PRICE] = float(order.created.price)
            level = logging.WARNING if order.status in (order.Margin, order.Rejected) else logging.INFO
            self._reporting.telemetry.log_event(
                names.ORDER_EVENT, f"order {order.ref} {side} {abs(order.created.size):g} {symbol}: {status}",
                attributes, _time_ns(bar_time) if bar_time else None, level,
            )
            if order.status in (order.Partial, order.Completed):
                for bit in order.executed.iterpending():
                    if bit.size:
                        self._monitor.record_trade(
                            symbol, side, float(bit.price), float(abs(bit.size)), self._strategy_name,
                            timestamp=_as_utc(_num2date(bit.dt)),
                        )

        @_guarded
        def notify_cashvalue(self, cash, value):
            bar_time = _bar_time(self.strategy)
            if bar_time is None:
                return  # before the first bar
            positions = {name: float(self.strategy.getposition(data).size) for data, name in self._datas.items()}
            self._monitor.record_portfolio(float(value), float(cash), positions, self._strategy_name, timestamp=bar_time)

        def get_analysis(self):
            return {}

    return TelemetryAnalyzer


def _num2date(number: float) -> dt.datetime:
    import backtrader

    return backtrader.num2date(number)


def _data_name(data, index: int) -> str:
    return getattr(data, "_name", "") or f"data{index}"


def _bar_time(strategy) -> dt.datetime | None:
    if not len(strategy):
        return None
    return _as_utc(strategy.datetime.datetime(0))


def _as_utc(moment: dt.datetime) -> dt.datetime:
    """backtrader's datetimes are naive, in the data's own time zone; they
    are taken as UTC (as record_trade takes any naive datetime)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _time_ns(moment: dt.datetime) -> int:
    return timestamp_ns(moment)


def _parameters(strategy) -> dict[str, Any]:
    try:
        return dict(strategy.params._getitems())
    except Exception:
        return {}


def _class_parameters(strategy_class, kwargs) -> dict[str, Any]:
    try:
        parameters = dict(strategy_class.params._getitems())
    except Exception:
        parameters = {}
    parameters.update(kwargs)
    return parameters


class BacktraderInstrumentor(BaseInstrumentor):
    """``BacktraderInstrumentor().instrument(telemetry=None)``: every
    ``Cerebro.run()`` from then on is a run span and gets a TelemetryAnalyzer."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    def _instrument(self, **kwargs) -> None:
        import backtrader

        telemetry = kwargs.get("telemetry")
        original = backtrader.Cerebro.run
        analyzer = _shared_analyzer()

        @functools.wraps(original)
        def run(cerebro, *args, **run_kwargs):
            try:
                stack = _start_run(cerebro, analyzer, telemetry)
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


def _start_run(cerebro, analyzer, telemetry) -> ExitStack:
    """Add the analyzer (unless the script added one) and open the run span."""
    stack = ExitStack()
    if not any(isinstance(entry[0], type) and issubclass(entry[0], _AnalyzerMarker) for entry in cerebro.analyzers):
        cerebro.addanalyzer(analyzer, telemetry=telemetry)
    if not cerebro.strats:
        return stack
    # cerebro.strats: one list of (class, args, kwargs) per addstrategy()/optstrategy()
    first_class, _, first_kwargs = cerebro.strats[0][0]
    name = "+".join(dict.fromkeys(entry[0][0].__name__ for entry in cerebro.strats))
    monitor = reporting_for(_telemetry(telemetry)).monitor
    stack.enter_context(monitor.run(name, _class_parameters(first_class, first_kwargs)))
    cerebro._rqa_run_open = True
    stack.callback(setattr, cerebro, "_rqa_run_open", False)
    return stack


class _AnalyzerMarker:
    """Base of every TelemetryAnalyzer class, to find one a script added."""


def __getattr__(name: str):
    # TelemetryAnalyzer subclasses backtrader.Analyzer, so it exists only
    # once backtrader is imported: built on first access.
    if name == "TelemetryAnalyzer":
        if importlib.util.find_spec("backtrader") is None:
            raise AttributeError("TelemetryAnalyzer needs backtrader (pip install backtrader)")
        return _shared_analyzer()
    raise AttributeError(name)


@functools.lru_cache(maxsize=None)
def _shared_analyzer():
    return _analyzer_class()


def instrument_backtrader(telemetry=None) -> bool:
    """Instrument backtrader for this process; True if it is (now or already),
    False when backtrader is not installed."""
    if importlib.util.find_spec("backtrader") is None:
        return False
    instrumentor = BacktraderInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(telemetry=telemetry)
    return instrumentor.is_instrumented_by_opentelemetry
