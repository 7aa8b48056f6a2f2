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

import datetime as dt
import json
import math
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from opentelemetry import trace
from opentelemetry.metrics import Observation

from rqa_otel import names
from rqa_otel._internal.metric_producers import ExplicitHistogram
from rqa_otel._internal.trade_journal import TradeJournal

ACTIONS = ("buy", "sell")
NOTIONAL_BUCKETS = (1e3, 1e4, 5e4, 1e5, 5e5, 1e6, 5e6, 1e7, 5e7)
"""CNY. Explicit buckets: the Collector's influxdb exporter rejects exponential histograms."""
OVERFLOW_ATTRIBUTES = {names.METRIC_OVERFLOW: True}


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
        self._telemetry = telemetry
        self._tracer: trace.Tracer = telemetry.tracer
        if journal_path is None:
            journal_path = os.path.join(telemetry.settings.export.directory, "trades.db")
        self.journal = TradeJournal(journal_path, commit_interval_s)
        self._series_limit = series_limit or 2000
        self._lock = threading.Lock()
        self._trade_totals: dict[tuple[str, str, str], list[float]] = {}
        self._overflowed = False
        self._portfolios: dict[str, dict[str, float]] = {}
        self._run_id = uuid.uuid4().hex
        self._sequence = 0
        meter = telemetry.meter
        # Aggregated here, not by the SDK's Histogram, whose record() costs
        # more than the rest of record_trade together.
        self._notional_histogram = ExplicitHistogram(
            names.TRADE_NOTIONAL_HISTOGRAM, "CNY", "Notional of each trade.", NOTIONAL_BUCKETS
        )
        telemetry.add_metric_producer(self._notional_histogram)
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

    # --- runs -----------------------------------------------------------------

    @contextmanager
    def run(self, strategy: str, parameters: Mapping[str, Any] | None = None, kind: str = "backtest") -> Iterator[str]:
        """One backtest or live run: a root span (its own trace) with a run id,
        the strategy and its parameters. Yields the run id."""
        strategy = _text("strategy", strategy)
        run_id = uuid.uuid4().hex
        attributes = {names.RUN_ID: run_id, names.RUN_KIND: kind, names.STRATEGY: strategy}
        for key, value in (parameters or {}).items():
            attributes[names.STRATEGY_PARAMETER_PREFIX + str(key)] = value if isinstance(value, (str, bool, int, float)) else str(value)
        previous, self._run_id = self._run_id, run_id
        try:
            with self._tracer.start_as_current_span(names.BACKTEST_SPAN, context=trace.set_span_in_context(trace.INVALID_SPAN), attributes=attributes):
                yield run_id
        finally:
            self._run_id = previous

    # --- trades -----------------------------------------------------------------

    def record_trade(self, symbol, action, price, quantity, strategy, timestamp=None) -> None:
        """Record one fill. Raises ValueError naming the bad field; then
        nothing at all is recorded."""
        symbol = _text("symbol", symbol)
        strategy = _text("strategy", strategy)
        side = action.lower() if isinstance(action, str) else action
        if side not in ACTIONS:
            raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)} (any case)")
        price = _positive("price", price)
        quantity = _positive("quantity", quantity)
        time_ns = _timestamp_ns(timestamp)
        notional = price * quantity
        run_id = self._run_id

        with self._lock:
            self._sequence += 1
            sequence = self._sequence
            key = (strategy, symbol, side)
            totals = self._trade_totals.get(key)
            if totals is None:
                if len(self._trade_totals) >= self._series_limit:
                    key = _OVERFLOW_KEY
                    totals = self._trade_totals.get(key)
                    if not self._overflowed:
                        self._overflowed = True
                        self._alert_overflow()
                if totals is None:
                    totals = self._trade_totals[key] = [0, 0.0, 0.0]
            totals[0] += 1
            totals[1] += quantity
            totals[2] += notional
        self._notional_histogram.record(notional, (strategy,), {names.STRATEGY: strategy})
        attributes = {
            names.STRATEGY: strategy,
            names.STOCK: symbol,
            names.SIGNAL: side.upper(),
            names.TRADE_SIDE: side,
            names.TRADE_PRICE: price,
            names.TRADE_QUANTITY: quantity,
            names.TRADE_NOTIONAL: notional,
            names.RUN_ID: run_id,
            names.TRADE_SEQUENCE: sequence,
        }
        # InfluxDB keeps one point per (measurement, tags, time): trades in the
        # same bar would overwrite each other, so each gets its own
        # nanosecond. The offset is deterministic, so a replay overwrites
        # the same point instead of adding one.
        self._telemetry.log_event(names.TRADE_EVENT, f"{side} {quantity:g} {symbol} @ {price:g}", attributes, time_ns + sequence % 1_000_000)
        self.journal.append_trade((run_id, strategy, symbol, side, price, quantity, time_ns))

    def get_trade_history(self, strategy=None, symbol=None, action=None, start=None, end=None, limit=None) -> list[Trade]:
        """Trades from the journal, oldest first; ``start`` inclusive, ``end``
        exclusive; ``limit`` keeps the first N. Includes every trade recorded
        before the call."""
        clauses, parameters = [], []
        for column, value in (("strategy", strategy), ("symbol", symbol)):
            if value is not None:
                clauses.append(f"{column} = ?")
                parameters.append(_text(column, value))
        if action is not None:
            side = action.lower() if isinstance(action, str) else action
            if side not in ACTIONS:
                raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)} (any case)")
            clauses.append("action = ?")
            parameters.append(side)
        for column, value, operator in (("start", start, ">="), ("end", end, "<")):
            if value is not None:
                clauses.append(f"time_ns {operator} ?")
                parameters.append(_timestamp_ns(value, field=column))
        sql = "SELECT strategy, symbol, action, price, quantity, time_ns, run_id FROM trades"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY time_ns, id"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"limit {limit!r}: expected an integer >= 0")
            sql += " LIMIT ?"
            parameters.append(limit)
        self.journal.flush()
        return [
            Trade(s, sym, a, p, q, dt.datetime.fromtimestamp(t / 1e9, dt.timezone.utc), r)
            for s, sym, a, p, q, t, r in self.journal.query(sql, parameters)
        ]

    # --- portfolio --------------------------------------------------------------

    def record_portfolio(self, value, cash, positions, strategy, timestamp=None) -> None:
        """Record a snapshot: ``positions`` maps symbol -> quantity."""
        strategy = _text("strategy", strategy)
        value = _finite("value", value)
        cash = _finite("cash", cash)
        if not isinstance(positions, Mapping):
            raise ValueError(f"positions {type(positions).__name__}: expected a mapping of symbol -> quantity")
        holdings = {_text("positions symbol", s): _finite(f"positions[{s!r}]", q) for s, q in positions.items()}
        time_ns = _timestamp_ns(timestamp)
        with self._lock:
            state = self._portfolios.setdefault(strategy, {"start": value, "peak": value})
            state["peak"] = max(state["peak"], value)
            state.update(
                value=value, cash=cash, positions=sum(1 for q in holdings.values() if q),
                drawdown=(state["peak"] - value) / state["peak"] if state["peak"] > 0 else 0.0,
                **{"return": value / state["start"] - 1 if state["start"] else 0.0},
            )
            drawdown, change = state["drawdown"], state["return"]
        attributes = {
            names.STRATEGY: strategy, names.STOCK: names.DEFAULT_STOCK, names.SIGNAL: names.DEFAULT_SIGNAL,
            # The event's attributes are named like the gauges they feed.
            names.PORTFOLIO_VALUE_GAUGE: value, names.PORTFOLIO_CASH_GAUGE: cash,
            names.PORTFOLIO_POSITIONS_GAUGE: len([q for q in holdings.values() if q]),
            names.PORTFOLIO_HOLDINGS: json.dumps(holdings, sort_keys=True),
            names.PORTFOLIO_DRAWDOWN_GAUGE: drawdown, names.PORTFOLIO_RETURN_GAUGE: change, names.RUN_ID: self._run_id,
        }
        self._telemetry.log_event(names.PORTFOLIO_EVENT, f"portfolio {value:.2f}", attributes, time_ns)
        self.journal.append_snapshot((self._run_id, strategy, value, cash, json.dumps(holdings, sort_keys=True), time_ns))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Make every trade recorded so far durable in the journal."""
        return self.journal.flush(timeout_s)

    def close(self) -> None:
        self.journal.close()

    # --- collection callbacks -----------------------------------------------------

    def _observe_totals(self, index: int):
        def observe(options):
            with self._lock:
                items = list(self._trade_totals.items())
            return [Observation(totals[index], _attributes(key)) for key, totals in items]

        return observe

    def _observe_portfolio(self, field: str):
        def observe(options):
            with self._lock:
                return [Observation(state[field], {names.STRATEGY: strategy}) for strategy, state in self._portfolios.items()]

        return observe

    def _alert_overflow(self) -> None:
        self._telemetry.alert(
            names.CARDINALITY_ALERT, "warning",
            message=f"more than {self._series_limit} (strategy, symbol, side) series: further ones go to the overflow series",
            attributes={names.METRIC_OVERFLOW: True},
        )


_OVERFLOW_KEY = ("", "", "")


def _attributes(key: tuple[str, str, str]) -> dict:
    if key == _OVERFLOW_KEY:
        return OVERFLOW_ATTRIBUTES
    return {names.STRATEGY: key[0], names.STOCK: key[1], names.TRADE_SIDE: key[2]}


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} {value!r}: expected a non-empty string")
    return value


def _finite(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} {value!r}: expected a finite number")
    return float(value)


def _positive(field: str, value: Any) -> float:
    number = _finite(field, value)
    if number <= 0:
        raise ValueError(f"{field} {value!r}: expected a number > 0")
    return number


def _timestamp_ns(value: Any, field: str = "timestamp") -> int:
    """None (now), a datetime (naive means UTC), a date (its midnight UTC) or
    int nanoseconds since the epoch, as int nanoseconds."""
    if value is None:
        return time.time_ns()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, dt.datetime):
        delta = (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)) - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    if isinstance(value, dt.date):
        return _timestamp_ns(dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc), field)
    raise ValueError(f"{field} {value!r}: expected a datetime, a date or int nanoseconds since the epoch")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
