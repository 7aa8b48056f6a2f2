"""``TelemetryAnalyzer``: backtrader's orders, fills and broker value as telemetry.

A module of its own because it subclasses ``backtrader.Analyzer`` and so
imports backtrader: ``rqa_otel.instrumentation.backtrader`` loads it only
when backtrader is used. Everything here lives at module level, never in a
function: backtrader's optimization with ``maxcpus > 1`` pickles the
analyzer class (by reference) into its pool workers, and the analyzer
instances back in its results.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
import time
from contextlib import ExitStack
from typing import Any

import backtrader

from rqa_otel import names
from rqa_otel.telemetry import current, setup
from rqa_otel.trading.monitor import BacktestMonitor, timestamp_ns

_log = logging.getLogger("rqa_otel.instrumentation.backtrader")

ORDER_DETAIL_STATUSES = {
    # Which order notifications count in rqa.orders; the setting
    # instrumentation.backtrader.orders picks one.
    "fills": frozenset({"Partial", "Completed", "Canceled", "Expired", "Margin", "Rejected"}),
    "all": frozenset({"Submitted", "Accepted", "Partial", "Completed", "Canceled", "Expired", "Margin", "Rejected"}),
    "none": frozenset(),
}
FOLDED_STATUSES = {
    # Of those, the ones without an rqa.order event of their own: at the
    # default level a fill is its rqa.trade event(s), which name the order
    # (rqa.order.id, rqa.order.type); an order event beside it repeated most
    # of it (about 900 bytes per fill). `all` keeps every event, and so does
    # instrumentation.backtrader.fill_order_events.
    "fills": frozenset({"Partial", "Completed"}),
    "all": frozenset(),
    "none": frozenset(),
}


_UNKNOWN = object()
_PARTIAL = backtrader.Order.Partial
_COMPLETED = backtrader.Order.Completed
_WARNING_STATUSES = frozenset({backtrader.Order.Margin, backtrader.Order.Rejected})
_SIGNALS = {"buy": "BUY", "sell": "SELL"}


class Reporting:
    """What one Telemetry handle reports backtrader through, in one process:
    a BacktestMonitor and the order counts. Built once per (process, handle):
    a forked pool worker gets its own, with its own journal connection."""

    def __init__(self, telemetry) -> None:
        self.telemetry = telemetry
        self.monitor = BacktestMonitor(telemetry)
        self.configured_strategy = telemetry.settings.strategy or ""
        level = telemetry.settings.get("instrumentation.backtrader.orders")
        statuses = backtrader.Order.Status
        self.order_statuses = frozenset(statuses.index(name) for name in ORDER_DETAIL_STATUSES[level])
        folded = () if telemetry.settings.get("instrumentation.backtrader.fill_order_events") else FOLDED_STATUSES[level]
        self.event_statuses = self.order_statuses - {statuses.index(name) for name in folded}
        # What notify_order looks at all: counted, or a fill (a trade at any level).
        self.handled_statuses = self.order_statuses | {_PARTIAL, _COMPLETED}
        self.count_order = self.monitor.order_counter()
        self.emit_order = telemetry.event_emitter(names.ORDER_EVENT)
        self.emit_order_warning = telemetry.event_emitter(names.ORDER_EVENT, logging.WARNING)


_reporting: dict[tuple[int, int], Reporting] = {}
_reporting_lock = threading.Lock()


def reporting_for(telemetry) -> Reporting:
    key = (os.getpid(), id(telemetry))
    with _reporting_lock:
        found = _reporting.get(key)
        if found is None or found.telemetry is not telemetry:
            found = _reporting[key] = Reporting(telemetry)
        return found


def telemetry_or_default(telemetry=None):
    if telemetry is not None:
        return telemetry
    return current() or setup()


_failed: set[str] = set()


def _guarded(method):
    """Telemetry never breaks the strategy: errors are logged once per method
    (and process), and the backtest goes on."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if self.__dict__.get("_rqa_off"):
            return None  # failed before: this analyzer reports nothing more
        try:
            return method(self, *args, **kwargs)
        except Exception:
            _fail(self, method.__name__)
            return None

    return guarded


def _fail(analyzer, method_name: str) -> None:
    """The analyzer reports nothing more; logged once per method and process
    (called while the exception is handled)."""
    analyzer._rqa_off = True
    analyzer._handled = frozenset()
    if method_name not in _failed:
        _failed.add(method_name)
        _log.warning("backtrader telemetry failed in %s; the strategy goes on without it", method_name, exc_info=True)


class AnalyzerMarker:
    """Base of every TelemetryAnalyzer class, to find one a script added."""


class TelemetryAnalyzer(backtrader.Analyzer, AnalyzerMarker):
    """Reports the orders, fills and broker value of its strategy.

    ``telemetry``: a handle (default: the global one, set up if needed).
    Opens the run span itself unless ``instrument()`` already did (it does
    for a plain run; each combination of an optimization is its own run)."""

    params = (("telemetry", None),)

    # The order statuses notify_order handles (set by start; none until
    # then, and none once the telemetry failed).
    _handled = frozenset()

    # What does not travel back to the parent with an optimization's results.
    _PROCESS_LOCAL = ("_reporting", "_monitor", "_stack", "_datas")

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in self._PROCESS_LOCAL:
            state.pop(name, None)
        return state

    @_guarded
    def start(self):
        self._handled = frozenset()
        reporting = self._reporting = reporting_for(telemetry_or_default(self.p.telemetry))
        self._monitor = reporting.monitor
        class_name = type(self.strategy).__name__
        # The name given to setup() / `rqa-otel run --strategy` wins; the class
        # is in its own attribute.
        self._strategy_name = reporting.configured_strategy or class_name
        self._datas = {data: _data_name(data, index) for index, data in enumerate(self.strategy.datas)}
        self._stack = ExitStack()
        self._last_bar: Any = None
        self._last_day: int | None = None
        self._time_cache: tuple[float, int] = (float("nan"), 0)
        # Without a time zone (cerebro's tz, set before analyzers start),
        # backtrader's float date has the day in its integer part (num2date
        # builds the date from it): each bar's day is then found without
        # building a datetime, which only a snapshot needs.
        self._day_of_number = getattr(self.strategy.datetime, "_tz", _UNKNOWN) is None
        if not getattr(self.strategy.env, "_rqa_run_open", False):
            parameters = _parameters(self.strategy)
            self._stack.enter_context(
                self._monitor.run(self._strategy_name, parameters, attributes={names.STRATEGY_CLASS: class_name})
            )
        self._handled = reporting.handled_statuses

    @_guarded
    def stop(self):
        # When cerebro.run() returns (or a pool worker hands its result
        # back), the run's trades are in the journal.
        if self._last_bar is not None and not self._last_bar[3]:
            self._last_bar = (*self._last_bar[:3], True)  # the end of the run
        self._record_portfolio()
        self._monitor.flush()
        self._stack.close()

    def notify_order(self, order):
        # The hot path of a churning backtest (several notifications per
        # fill): a status below the detail level returns here, before any
        # other work; then plain attribute reads, one shaped event, cached
        # bar times. Guarded inline (a wrapper call per notification costs
        # more than the check).
        status = order.status
        if status not in self._handled:
            return
        try:
            self._report_order(order, status)
        except Exception:
            _fail(self, "notify_order")

    def _report_order(self, order, status: int) -> None:
        reporting = self._reporting
        side = "buy" if order.isbuy() else "sell"
        symbol = self._datas.get(order.data) or _data_name(order.data, 0)
        if status in reporting.order_statuses:
            status_name = order.Status[status]
            reporting.count_order(self._strategy_name, side, status_name)
            if status in reporting.event_statuses:
                size = abs(order.created.size)
                values = (
                    self._strategy_name, symbol, _SIGNALS[side], status_name, side, order.getordername(),
                    self._monitor.current_run_id, float(size), float(order.created.price or 0.0), int(order.ref),
                )
                emit = reporting.emit_order_warning if status in _WARNING_STATUSES else reporting.emit_order
                emit(f"order {order.ref} {side} {size:g} {symbol}: {status_name}", values, self._bar_ns())
        if status == _PARTIAL or status == _COMPLETED:
            order_id, order_type = int(order.ref), order.getordername()
            for bit in order.executed.iterpending():
                if bit.size:
                    self._monitor.record_trade(
                        symbol, side, float(bit.price), float(abs(bit.size)), self._strategy_name,
                        timestamp=self._time_ns(bit.dt), order_id=order_id, order_type=order_type,
                    )

    def _bar_ns(self) -> int:
        try:
            number = self.strategy.datetime[0]  # len(strategy) costs more than this whole call
        except IndexError:
            return time.time_ns()  # before the first bar
        return self._time_ns(number)

    def _time_ns(self, number: float) -> int:
        """backtrader's float date as int nanoseconds (through num2date, as
        before; cached, since a bar's notifications share their time)."""
        cached = self._time_cache
        if cached[0] != number:
            cached = self._time_cache = (number, timestamp_ns(_as_utc(backtrader.num2date(number))))
        return cached[1]

    @_guarded
    def notify_cashvalue(self, cash, value):
        # A snapshot at the first bar of each trading day and at the end,
        # not on every bar: for an intraday backtest a snapshot per bar
        # would be most of the telemetry's cost and add little.
        if self._day_of_number:
            try:
                number = self.strategy.datetime[0]
            except IndexError:
                return  # before the first bar
            if not number >= 1.0:
                return  # no date yet (NaN, or before day 1)
            day = int(number)
            if day != self._last_day:
                self._last_day = day
                self._last_bar = (number, float(cash), float(value), True)
                self._record_portfolio()
            else:
                self._last_bar = (number, float(cash), float(value), False)
            return
        bar_time = _bar_time(self.strategy)
        if bar_time is None:
            return  # before the first bar
        last = self._last_bar
        if last is None or last[0].date() != bar_time.date():
            self._last_bar = (bar_time, float(cash), float(value), True)
            self._record_portfolio()
        else:
            self._last_bar = (bar_time, float(cash), float(value), False)

    def _record_portfolio(self) -> None:
        last = self._last_bar
        if last is None:
            return
        moment, cash, value, due = last
        if not due:
            return
        self._last_bar = (moment, cash, value, False)
        # A bar's float date (no time zone) or its datetime.
        bar_time = _as_utc(backtrader.num2date(moment)) if moment.__class__ is float else moment
        getposition = self.strategy.broker.getposition  # what strategy.getposition(data) asks
        positions = {name: float(getposition(data).size) for data, name in self._datas.items()}
        self._monitor.record_portfolio(value, cash, positions, self._strategy_name, timestamp=bar_time)

    def get_analysis(self):
        return {}


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


def _parameters(strategy) -> dict[str, Any]:
    try:
        return dict(strategy.params._getkwargs())  # this instance's values (one combination)
    except Exception:
        return {}


def class_parameters(strategy_class, kwargs) -> dict[str, Any]:
    try:
        parameters = dict(strategy_class.params._getitems())
    except Exception:
        parameters = {}
    parameters.update(kwargs)
    return parameters
