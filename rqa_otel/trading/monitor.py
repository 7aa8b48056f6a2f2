"""BacktestMonitor: trades and portfolio state as telemetry, with a durable journal.

    monitor = BacktestMonitor(telemetry, journal_path="rqa-telemetry/trades.db")
    with monitor.run("dual_ma", {"fast": 10, "slow": 40}):
        monitor.record_trade("600519.SH", "buy", 1688.5, 100, "dual_ma", timestamp=bar_time)
        monitor.record_portfolio(1_000_000.0, 831_150.0, {"600519.SH": 100}, "dual_ma", timestamp=bar_time)
    monitor.get_trade_history(strategy="dual_ma", symbol="600519.SH")

What each call becomes (docs/telemetry.md has every name, and why):
- a trade: the ``rqa.trades``, ``rqa.trade.volume`` and ``rqa.trade.notional``
  counters by strategy, symbol and side (aggregated here and read at each
  collection, so a trade costs a dict update, not three SDK calls), the
  ``rqa.trade.notional_per_trade`` histogram (explicit buckets), a
  ``rqa.trade`` log event correlated with the active span and stamped with
  the trade's own (simulated) time, and a journal row;
- a portfolio snapshot: observable gauges (value, cash, positions, drawdown
  from the running peak, return since the first snapshot), a
  ``rqa.portfolio`` log event and a journal row;
- a run: one ``rqa.backtest`` span, the root of its own trace.

Bad input raises ValueError naming the field before anything is recorded.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import math
import operator
import os
import sys
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from opentelemetry import trace
from opentelemetry.metrics import Observation

from rqa_otel import names
from rqa_otel.export.log_entry import EventShape, register_shape, register_variant
from rqa_otel.export.metric_producers import ExplicitHistogram
from rqa_otel.quant import check_label
from rqa_otel.trading.journal import TradeJournal, portfolio_history_query

ACTIONS = ("buy", "sell")
NOTIONAL_BUCKETS = (1e3, 1e4, 5e4, 1e5, 5e5, 1e6, 5e6, 1e7, 5e7)
"""CNY. Explicit buckets: the Collector's influxdb exporter rejects exponential histograms."""
OVERFLOW_ATTRIBUTES = {names.METRIC_OVERFLOW: True}
CUSTOM_METRICS_KEPT = 10_000
"""Custom-metric values a monitor keeps for get_custom_metrics (memory stays bounded)."""


@dataclass(frozen=True)
class Trade:
    strategy: str
    symbol: str
    action: str
    price: float
    quantity: float
    timestamp: dt.datetime
    run_id: str

    @property
    def notional(self) -> float:
        return self.price * self.quantity

    # The RQA2025 design's get_trade_history returned custom-metric dicts:
    # {"name": "trade_event", "value": price, "tags": {...}, "timestamp": ...},
    # with the action in upper case. A Trade answers the same keys.
    def __getitem__(self, key: str) -> Any:
        if key == "tags":
            return {"symbol": self.symbol, "action": self.action.upper(), "quantity": str(self.quantity),
                    "strategy": self.strategy, "run_id": self.run_id}
        if key in _DESIGN_KEYS:
            return _DESIGN_KEYS[key](self)
        raise KeyError(f"{key!r}: a trade record has {', '.join(['tags', *_DESIGN_KEYS])}")

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


_DESIGN_KEYS = {
    "name": lambda trade: "trade_event",
    "value": lambda trade: trade.price,
    "timestamp": lambda trade: trade.timestamp,
}


class BacktestMonitor:
    def __init__(
        self,
        telemetry,
        journal_path: str | os.PathLike[str] | None = None,
        series_limit: int | None = None,
        commit_interval_s: float = 0.05,
    ) -> None:
        """``telemetry``: a handle from ``rqa_otel.setup()`` (``set_global=False``
        in tests). ``journal_path``: the SQLite journal (default
        ``<export.directory>/trades.db``). ``series_limit``: series per
        instrument before data points go to the overflow series (default 2000,
        as in the OTel specification)."""
        if isinstance(telemetry, str):
            raise TypeError(
                f"BacktestMonitor(telemetry): got the string {telemetry!r}; pass a handle from rqa_otel.setup(), or use "
                "the design's rqa_otel.rqa2025.BacktestMonitor(app_name=...), which uses the global telemetry"
            )
        self._telemetry = telemetry
        self._tracer: trace.Tracer = telemetry.tracer
        self._custom_metrics: collections.deque = collections.deque(maxlen=CUSTOM_METRICS_KEPT)
        if journal_path is None:
            journal_path = os.path.join(telemetry.settings.export.directory, "trades.db")
        self.journal = TradeJournal(journal_path, commit_interval_s, file_mode=telemetry.settings.export.file_mode)
        # Instruments can be registered once per meter: every monitor of a
        # handle shares its series (a second monitor used to feed nothing).
        shared = self._shared = _shared_series(telemetry, series_limit or 2000)
        self._series_limit = shared.series_limit
        self._lock = shared.lock
        self._trade_totals = shared.trade_totals
        self._portfolios = shared.portfolios
        self._notional_histogram = shared.histogram
        self._run_id = uuid.uuid4().hex
        self._sequence = 0
        self._known_symbols: set[str] = set()  # position symbols that passed the checks
        self._known_strategies: set[str] = set()  # record_portfolio's, likewise
        self._emit_trade = telemetry.event_emitter(names.TRADE_EVENT)
        self._append_trade = self.journal.append_trade

    # --- runs -----------------------------------------------------------------

    @contextmanager
    def run(
        self, strategy: str, parameters: Mapping[str, Any] | None = None, kind: str = "backtest",
        attributes: Mapping[str, Any] | None = None,
    ) -> Iterator[str]:
        """One backtest or live run: a root span (its own trace) with a run id,
        the strategy, its parameters and any further ``attributes``. Yields
        the run id."""
        strategy = _text("strategy", strategy)
        run_id = uuid.uuid4().hex
        attributes = {**(attributes or {}), names.RUN_ID: run_id, names.RUN_KIND: kind, names.STRATEGY: strategy}
        for key, value in (parameters or {}).items():
            attributes[names.STRATEGY_PARAMETER_PREFIX + str(key)] = value if isinstance(value, (str, bool, int, float)) else str(value)
        previous, self._run_id = self._run_id, run_id
        try:
            with self._tracer.start_as_current_span(names.BACKTEST_SPAN, context=trace.set_span_in_context(trace.INVALID_SPAN), attributes=attributes):
                yield run_id
        finally:
            self._run_id = previous

    @property
    def current_run_id(self) -> str:
        """The id of the run in progress (or of this monitor, outside runs)."""
        return self._run_id

    def order_counter(self):
        """``count(strategy, side, status)``: one order notification in the
        ``rqa.orders`` counter (the handle's, shared by its monitors)."""
        return self._shared.count_order

    # --- trades -----------------------------------------------------------------

    def record_trade(self, symbol, action, price, quantity, strategy, timestamp=None, order_id=None, order_type=None) -> None:
        """Record one fill. ``order_id`` (int) and ``order_type`` (text,
        ``Market``...), together or not at all: the order it fills, as
        ``rqa.order.id`` and ``rqa.order.type`` on the trade event. Raises
        ValueError naming the bad field; then nothing at all is recorded."""
        # Validation, inline for the usual types (a helper call per field
        # would cost a fifth of the whole call); anything else goes through
        # the helpers, which accept or name the field in their error.
        if symbol.__class__ is not str or not symbol or symbol.isspace():
            symbol = str(_text("symbol", symbol))  # exact str: the event shape promises it
        if strategy.__class__ is not str or not strategy or strategy.isspace():
            strategy = str(_text("strategy", strategy))
        side = _SIDES.get(action) if action.__class__ is str else None
        if side is None:
            side = _side(action)
        if price.__class__ is not float or not 0.0 < price < _INFINITY:
            price = _positive("price", price)
        if quantity.__class__ is int and 0 < quantity < _EXACT_INT:
            quantity = float(quantity)  # shares: the common case
        elif quantity.__class__ is not float or not 0.0 < quantity < _INFINITY:
            quantity = _positive("quantity", quantity)
        if timestamp.__class__ is int and 0 <= timestamp < _MAX_TIME_NS:
            time_ns = timestamp
        else:
            time_ns = timestamp_ns(timestamp)
        if order_id is not None or order_type is not None:
            # Inline for the usual values (an order type already checked);
            # _order converts other integers, checks the type or raises.
            if not (order_id.__class__ is int and -_INT64 <= order_id < _INT64 and order_type in _ORDER_TYPES_CHECKED):
                order_id, order_type = _order(order_id, order_type)
        notional = price * quantity
        if notional == _INFINITY:
            raise ValueError(f"price {price!r} x quantity {quantity!r}: the notional is not a finite number")
        run_id = self._run_id

        key = (strategy, symbol, side)
        with self._lock:
            totals = self._trade_totals.get(key)
            if totals is None:
                totals = self._new_series(key)  # raises for a symbol or strategy no tag can carry
            self._sequence = sequence = self._sequence + 1
            totals[0] += 1
            totals[1] += quantity
            totals[2] += notional
            self._notional_histogram.record(notional, strategy)
        # InfluxDB keeps one point per (measurement, tags, time): trades in the
        # same bar would overwrite each other, so each gets its own
        # nanosecond. The offset is deterministic, so a replay overwrites
        # the same point instead of adding one.
        if order_id is None:
            # The values of TRADE_EVENT_SHAPE, in its order (exact str, float, int).
            attributes = (strategy, symbol, _SIGNALS[side], side, run_id, price, quantity, notional, sequence)
        else:
            # ORDER_TRADE_EVENT_SHAPE's.
            attributes = (strategy, symbol, _SIGNALS[side], side, run_id, order_type, price, quantity, notional, sequence, order_id)
        self._emit_trade("%s %g %s @ %g" % (side, quantity, symbol, price), attributes, time_ns + sequence % 1_000_000)
        # A flat tuple of atomic values: the garbage collector stops tracking
        # it at its first pass, while a nested tuple survives into the older
        # generations and makes full collections frequent (15 % of the time).
        self._append_trade((run_id, strategy, symbol, side, price, quantity, time_ns))

    def _new_series(self, key: tuple[str, str, str]) -> list:
        """The totals of a (strategy, symbol, side) seen for the first time,
        or of the overflow series past the limit (lock held). The text checks
        run here, once per series: a key already seen has passed them."""
        check_label("strategy", key[0])
        check_label("symbol", key[1])
        if len(self._trade_totals) >= self._series_limit + (_OVERFLOW_KEY in self._trade_totals):
            key = _OVERFLOW_KEY
            if key not in self._trade_totals:
                self._alert_overflow()
        totals = self._trade_totals.get(key)
        if totals is None:
            totals = self._trade_totals[key] = [0, 0.0, 0.0]
        return totals

    def get_trade_history(
        self, strategy=None, symbol=None, action=None, start=None, end=None, limit=None, run_id=None
    ) -> list[Trade]:
        """Trades from the journal, oldest first; ``start`` inclusive, ``end``
        exclusive; ``limit`` keeps the first N; ``run_id`` (from ``run()``)
        keeps one run's. Includes every trade recorded before the call."""
        sql, parameters = history_query(strategy, symbol, action, start, end, limit, run_id)
        self.journal.flush()
        return [
            Trade(s, sym, a, p, q, dt.datetime.fromtimestamp(t / 1e9, dt.timezone.utc), r)
            for s, sym, a, p, q, t, r in self.journal.query(sql, parameters)
        ]

    # --- portfolio --------------------------------------------------------------

    def record_portfolio(self, value, cash, positions, strategy, timestamp=None) -> None:
        """Record a snapshot: ``positions`` maps symbol -> quantity."""
        # Inline for the usual types, as in record_trade; the helpers accept
        # anything else or name the field in their error.
        if strategy.__class__ is not str or strategy not in self._known_strategies:
            strategy = _text("strategy", strategy)
            if len(self._known_strategies) < _KNOWN_SYMBOLS_KEPT:
                self._known_strategies.add(strategy)
        if value.__class__ is not float or value - value != 0.0:  # x - x is nan for inf and nan
            value = _finite("value", value)
        if cash.__class__ is not float or cash - cash != 0.0:
            cash = _finite("cash", cash)
        if not isinstance(positions, Mapping):
            raise ValueError(f"positions {type(positions).__name__}: expected a mapping of symbol -> quantity")
        holdings = self._holdings(positions)
        time_ns = timestamp_ns(timestamp)
        held = len(holdings) - list(holdings.values()).count(0.0)  # -0.0 counts as none held too
        holdings_json = json.dumps(holdings, sort_keys=True)  # once: the event and the journal row
        with self._lock:
            state = self._portfolios.setdefault(strategy, {"start": value, "peak": value})
            state["peak"] = max(state["peak"], value)
            state.update(
                value=value, cash=cash, positions=held,
                drawdown=(state["peak"] - value) / state["peak"] if state["peak"] > 0 else 0.0,
                **{"return": value / state["start"] - 1 if state["start"] else 0.0},
            )
            drawdown, change = state["drawdown"], state["return"]
        attributes = {
            names.STRATEGY: strategy, names.STOCK: names.DEFAULT_STOCK, names.SIGNAL: names.DEFAULT_SIGNAL,
            # The event's attributes are named like the gauges they feed.
            names.PORTFOLIO_VALUE_GAUGE: value, names.PORTFOLIO_CASH_GAUGE: cash,
            names.PORTFOLIO_POSITIONS_GAUGE: held,
            names.PORTFOLIO_HOLDINGS: holdings_json,
            names.PORTFOLIO_DRAWDOWN_GAUGE: drawdown, names.PORTFOLIO_RETURN_GAUGE: change, names.RUN_ID: self._run_id,
        }
        self._telemetry.log_event(names.PORTFOLIO_EVENT, f"portfolio {value:.2f}", attributes, time_ns)
        self.journal.append_snapshot((self._run_id, strategy, value, cash, holdings_json, time_ns))

    def _holdings(self, positions: Mapping) -> dict[str, float]:
        """``positions`` checked, as symbol -> float. A snapshot of a whole
        universe is taken every trading day: symbols seen before and finite
        floats pass without the per-item checks (a few hundred calls)."""
        known = self._known_symbols
        if positions.__class__ is dict:
            for symbol, quantity in positions.items():
                if symbol.__class__ is not str or symbol not in known:
                    break
                # x - x is nan for inf and nan: those take the checks below;
                # whole shares (int, not bool) are as usual as floats.
                if quantity.__class__ is float:
                    if quantity - quantity != 0.0:
                        break
                elif quantity.__class__ is not int or not _FINITE_MIN <= quantity <= _FINITE_MAX:
                    break
            else:
                return {symbol: float(quantity) for symbol, quantity in positions.items()}
        holdings = {_text("positions symbol", s): _quantity(s, q) for s, q in positions.items()}
        if len(known) < _KNOWN_SYMBOLS_KEPT:
            known.update(s for s in holdings if s.__class__ is str)
        return holdings

    # --- the design's ApplicationMonitor custom metrics ------------------------------

    def record_custom_metric(self, name, value, tags=None, timestamp=None) -> None:
        """One value of a metric of the caller's own (the design's
        ApplicationMonitor call): a ``rqa.custom_metric`` log event with the
        tags as attributes, kept for ``get_custom_metrics`` (the last
        CUSTOM_METRICS_KEPT values). Raises ValueError naming a bad field."""
        name = _text("name", name)
        value = _finite("value", value)
        if tags is not None and not isinstance(tags, Mapping):
            raise ValueError(f"tags {type(tags).__name__}: expected a mapping of tag -> value")
        tags = {str(key): str(tag) for key, tag in (tags or {}).items()}
        time_ns = timestamp_ns(timestamp)
        attributes = {names.CUSTOM_METRIC_NAME: name, names.CUSTOM_METRIC_VALUE: value, names.RUN_ID: self._run_id}
        attributes.update({names.CUSTOM_METRIC_TAG_PREFIX + key: tag for key, tag in tags.items()})
        if "strategy" in tags:
            attributes[names.STRATEGY] = tags["strategy"]
        self._telemetry.log_event(names.CUSTOM_METRIC_EVENT, f"{name}={value:g}", attributes, time_ns)
        moment = dt.datetime.fromtimestamp(time_ns / 1e9, dt.timezone.utc)
        self._custom_metrics.append({"name": name, "value": value, "tags": tags, "timestamp": moment})

    def get_custom_metrics(self, name=None) -> list[dict]:
        """Values recorded with ``record_custom_metric`` in this process,
        oldest first, as {"name", "value", "tags", "timestamp"}; ``name``
        keeps one metric's."""
        kept = list(self._custom_metrics)
        return [dict(m, tags=dict(m["tags"])) for m in kept if name is None or m["name"] == name]

    def get_portfolio_history(self, run_id=None, strategy=None, start=None, end=None, limit=None) -> list[PortfolioSnapshot]:
        """Portfolio snapshots from the journal, oldest first: of one run
        (``run_id``, as ``run()`` yields it) and/or one strategy; ``start``
        inclusive, ``end`` exclusive; ``limit`` keeps the first N. Includes
        every snapshot recorded before the call."""
        run_id = None if run_id is None else _text("run_id", run_id)
        strategy = None if strategy is None else _text("strategy", strategy)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit {limit!r}: expected an integer >= 0")
        sql, parameters = portfolio_history_query(
            run_id, strategy, None if start is None else timestamp_ns(start, field="start"),
            None if end is None else timestamp_ns(end, field="end"), limit,
        )
        self.journal.flush()
        return [
            PortfolioSnapshot(r, s, v, c, json.loads(p), dt.datetime.fromtimestamp(t / 1e9, dt.timezone.utc))
            for r, s, v, c, p, t in self.journal.query(sql, parameters)
        ]

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Make every trade recorded so far durable in the journal."""
        return self.journal.flush(timeout_s)

    def close(self) -> None:
        self.journal.close()

    def _alert_overflow(self) -> None:
        self._shared.alert_overflow()


class _SharedSeries:
    """The trade, order and portfolio series of one telemetry handle, for all
    its monitors: the instruments and the histogram are registered once.
    A forked child starts from nothing (what the parent counted is the
    parent's to report, under its own process.pid)."""

    def __init__(self, telemetry, series_limit: int) -> None:
        self.telemetry = telemetry
        self.series_limit = series_limit
        self.lock = threading.Lock()
        self.trade_totals: dict[tuple[str, str, str], list[float]] = {}
        self.order_totals: dict[tuple[str, str, str], int] = {}
        self.portfolios: dict[str, dict[str, float]] = {}
        self.overflowed = False
        meter = telemetry.meter
        scrubber = getattr(telemetry, "scrubber", None)
        scrub = scrubber.scrub_attributes if scrubber is not None else dict
        # Aggregated here, not by the SDK's Histogram, whose record() costs
        # more than the rest of record_trade together.
        self.histogram = ExplicitHistogram(
            names.TRADE_NOTIONAL_HISTOGRAM, "CNY", "Notional of each trade.", NOTIONAL_BUCKETS,
            # Once per strategy, where the series is made: a produced metric
            # does not pass the SDK's series scrubbing.
            attributes_of=lambda strategy: scrub({names.STRATEGY: strategy}), series_limit=series_limit,
            overflow_attributes=OVERFLOW_ATTRIBUTES, on_overflow=self.alert_overflow, lock=self.lock,
        )
        telemetry.add_metric_producer(self.histogram)
        for name, index, unit, description in (
            (names.TRADES_COUNTER, 0, "{trade}", "Trades, by strategy, symbol and side."),
            (names.TRADE_VOLUME_COUNTER, 1, "{share}", "Traded quantity, by strategy, symbol and side."),
            (names.TRADE_NOTIONAL_COUNTER, 2, "CNY", "Traded notional (price x quantity), by strategy, symbol and side."),
        ):
            meter.create_observable_counter(name, [self._observe_totals(index)], unit=unit, description=description)
        for name, field, unit, description in (
            (names.PORTFOLIO_VALUE_GAUGE, "value", "CNY", "Portfolio value at the last snapshot."),
            (names.PORTFOLIO_CASH_GAUGE, "cash", "CNY", "Cash at the last snapshot."),
            (names.PORTFOLIO_POSITIONS_GAUGE, "positions", "{position}", "Open positions at the last snapshot."),
            (names.PORTFOLIO_DRAWDOWN_GAUGE, "drawdown", "1", "Drawdown from the running peak value (0.1 = 10 %)."),
            (names.PORTFOLIO_RETURN_GAUGE, "return", "1", "Return since the first snapshot (0.1 = 10 %)."),
        ):
            meter.create_observable_gauge(name, [self._observe_portfolio(field)], unit=unit, description=description)
        # Counted here and read at each collection: an order notification
        # costs a dict update, not an SDK call with its attribute set.
        meter.create_observable_counter(
            names.ORDERS_COUNTER, [self._observe_orders], unit="{order}",
            description="Order notifications from the broker, by strategy, side and status.",
        )
        if hasattr(os, "register_at_fork"):
            reference = weakref.ref(self)
            # The lock is taken around fork(), so no thread holds it in the child.
            os.register_at_fork(
                before=lambda: _call(reference, "_before_fork"),
                after_in_parent=lambda: _call(reference, "_after_fork_in_parent"),
                after_in_child=lambda: _call(reference, "_after_fork_in_child"),
            )

    def count_order(self, strategy: str, side: str, status: str) -> None:
        key = (strategy, side, status)
        with self.lock:
            self.order_totals[key] = self.order_totals.get(key, 0) + 1

    def _before_fork(self) -> None:
        self.lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self.lock.release()

    def _after_fork_in_child(self) -> None:
        self.trade_totals.clear()
        self.order_totals.clear()
        self.portfolios.clear()
        self.histogram.reset()
        self.lock.release()

    def _observe_totals(self, index: int):
        def observe(options):
            with self.lock:
                items = list(self.trade_totals.items())
            return [Observation(totals[index], _attributes(key)) for key, totals in items]

        return observe

    def _observe_orders(self, options):
        with self.lock:
            items = list(self.order_totals.items())
        return [
            Observation(count, {names.STRATEGY: strategy, names.TRADE_SIDE: side, names.ORDER_STATUS: status})
            for (strategy, side, status), count in items
        ]

    def _observe_portfolio(self, field: str):
        def observe(options):
            with self.lock:
                return [Observation(state[field], {names.STRATEGY: strategy}) for strategy, state in self.portfolios.items()]

        return observe

    def alert_overflow(self) -> None:
        if self.overflowed:
            return  # once per handle, whichever instrument overflowed first
        self.overflowed = True
        self.telemetry.alert(
            names.CARDINALITY_ALERT, "warning",
            message=f"more than {self.series_limit} (strategy, symbol, side) series: further ones go to the overflow series",
            attributes={names.METRIC_OVERFLOW: True},
        )


_shared: "weakref.WeakKeyDictionary[Any, _SharedSeries]" = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def _shared_series(telemetry, series_limit: int) -> _SharedSeries:
    with _shared_lock:
        found = _shared.get(telemetry)
        if found is None:
            found = _shared[telemetry] = _SharedSeries(telemetry, series_limit)
        return found


def _call(reference, method: str) -> None:
    instance = reference()
    if instance is not None:
        getattr(instance, method)()


def history_query(strategy=None, symbol=None, action=None, start=None, end=None, limit=None, run_id=None) -> tuple[str, list]:
    """The SQL and parameters of a get_trade_history() call, validated."""
    series, clauses, parameters = [], [], []
    if run_id is not None:
        clauses.append("trades.run = (SELECT id FROM runs WHERE run_id = ?)")
        parameters.append(_text("run_id", run_id))
    for column, value in (("strategy", strategy), ("symbol", symbol)):
        if value is not None:
            series.append(f"{column} = ?")
            parameters.append(_text(column, value))
    if action is not None:
        series.append("action = ?")
        parameters.append(_side(action))
    if series:
        # Through the index on (series, time_ns): the (few) series that match.
        clauses.append(f"trades.series IN (SELECT id FROM series WHERE {' AND '.join(series)})")
    for column, value, operator in (("start", start, ">="), ("end", end, "<")):
        if value is not None:
            clauses.append(f"trades.time_ns {operator} ?")
            parameters.append(timestamp_ns(value, field=column))
    sql = (
        "SELECT strategy, symbol, action, price, quantity, time_ns, run_id FROM trades"
        " JOIN series ON series.id = trades.series JOIN runs ON runs.id = trades.run"
    )
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY trades.time_ns, trades.id"
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit {limit!r}: expected an integer >= 0")
        sql += " LIMIT ?"
        parameters.append(limit)
    return sql, parameters


_OVERFLOW_KEY = ("", "", "")
_KNOWN_SYMBOLS_KEPT = 100_000
TRADE_EVENT_SHAPE = register_shape(EventShape(
    names.TRADE_EVENT,
    strings=(names.STRATEGY, names.STOCK, names.SIGNAL, names.TRADE_SIDE, names.RUN_ID),
    floats=(names.TRADE_PRICE, names.TRADE_QUANTITY, names.TRADE_NOTIONAL),
    ints=(names.TRADE_SEQUENCE,),
))
"""A trade event's attributes travel as a tuple of values (see EventShape)."""
ORDER_TRADE_EVENT_SHAPE = register_variant(EventShape(
    names.TRADE_EVENT,
    strings=(names.STRATEGY, names.STOCK, names.SIGNAL, names.TRADE_SIDE, names.RUN_ID, names.ORDER_TYPE),
    floats=(names.TRADE_PRICE, names.TRADE_QUANTITY, names.TRADE_NOTIONAL),
    ints=(names.TRADE_SEQUENCE, names.ORDER_ID),
))
"""A trade that names the order it fills (``record_trade(..., order_id=, order_type=)``)."""
ORDER_EVENT_SHAPE = register_shape(EventShape(
    names.ORDER_EVENT,
    strings=(names.STRATEGY, names.STOCK, names.SIGNAL, names.ORDER_STATUS, names.TRADE_SIDE, names.ORDER_TYPE, names.RUN_ID),
    floats=(names.ORDER_SIZE, names.ORDER_PRICE),
    ints=(names.ORDER_ID,),
))
"""An order notification's attributes (``rqa.order.price`` 0.0 for an order
without a price), as a tuple of values: emitted by
``telemetry.event_emitter(names.ORDER_EVENT)``."""
_SIDES = {spelling: side for side in ACTIONS for spelling in (side, side.upper(), side.capitalize())}
_SIGNALS = {side: side.upper() for side in ACTIONS}
_INFINITY = math.inf
_EXACT_INT = 2**53  # ints up to here convert to float exactly
_INT64 = 2**63
_ORDER_TYPES_CHECKED: set[str] = set()  # order types that passed _order's checks
_MAX_TIME_NS = 2**63 - 1_000_000  # int64 nanoseconds (year 2262), less the per-trade offset


def _side(action: Any) -> str:
    side = action.lower() if isinstance(action, str) else action
    if side not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)} (any case)")
    return side


def _order(order_id: Any, order_type: Any) -> tuple[int, str]:
    try:
        number = operator.index(order_id) if not isinstance(order_id, bool) else None  # numpy integers too
    except TypeError:
        number = None
    if number is None or not -_INT64 <= number < _INT64:
        raise ValueError(f"order_id {order_id!r}: expected an integer (with order_type)")
    order_id = int(number)
    if order_type.__class__ is not str or not order_type or order_type.isspace():
        raise ValueError(f"order_type {order_type!r}: expected a non-empty string (with order_id)")
    check_label("order_type", order_type)
    if len(_ORDER_TYPES_CHECKED) < 1000:  # a handful in practice (Market, Limit, Stop...)
        _ORDER_TYPES_CHECKED.add(order_type)
    return order_id, order_type


def _attributes(key: tuple[str, str, str]) -> dict:
    if key == _OVERFLOW_KEY:
        return OVERFLOW_ATTRIBUTES
    return {names.STRATEGY: key[0], names.STOCK: key[1], names.TRADE_SIDE: key[2]}


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} {value!r}: expected a non-empty string")
    return check_label(field, value)


def _finite(field: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan  # an int too large for a float lands here
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(number):
        raise ValueError(f"{field} {value!r}: expected a finite number")
    return number


def _quantity(symbol: Any, value: Any) -> float:
    """A position's quantity: the field's name is spelt only for an error."""
    if (value.__class__ is float or value.__class__ is int) and _FINITE_MIN <= value <= _FINITE_MAX:
        return float(value)
    return _finite(f"positions[{symbol!r}]", value)


_FINITE_MAX = sys.float_info.max
_FINITE_MIN = -_FINITE_MAX


def _positive(field: str, value: Any) -> float:
    number = _finite(field, value)
    if number <= 0:
        raise ValueError(f"{field} {value!r}: expected a number > 0")
    return number


def timestamp_ns(value: Any, field: str = "timestamp") -> int:
    """None (now), a datetime (naive means UTC), a date (its midnight UTC) or
    int nanoseconds since the epoch, as int nanoseconds."""
    if value is None:
        return time.time_ns()
    if isinstance(value, int) and not isinstance(value, bool):
        time_ns = int(value)
    elif isinstance(value, dt.datetime):
        delta = (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)) - _EPOCH
        time_ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    elif isinstance(value, dt.date):
        return timestamp_ns(dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc), field)
    else:
        raise ValueError(f"{field} {value!r}: expected a datetime, a date or int nanoseconds since the epoch")
    # OTLP times are unsigned 64-bit and SQLite integers signed 64-bit: a
    # time outside both would fail in the exporter or the journal, later.
    if not 0 <= time_ns < _MAX_TIME_NS:
        raise ValueError(f"{field} {value!r}: expected a time between 1970 and 2262")
    return time_ns


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class PortfolioSnapshot:
    """One row of get_portfolio_history(): the journal's portfolio table (docs/journal.md)."""

    run_id: str
    strategy: str
    value: float
    cash: float
    positions: dict[str, float]
    timestamp: dt.datetime
