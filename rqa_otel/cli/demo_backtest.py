"""``rqa-otel demo``: an instrumented backtest that needs no server.

Seeded synthetic daily prices for a few A-share stocks, a dual moving-average
strategy, and the telemetry a real strategy would send: one span per run, a
log record per signal with the quant attributes, trade events and counters,
and a portfolio gauge. Everything goes to the embedded default (OTLP JSON
files) unless ``--otlp-endpoint`` points at a Collector.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from rqa_otel.resources.quota import ResourceManager
from rqa_otel.resources.registry import Registry
from rqa_otel.trading.errors import InsufficientFunds, OrderRejected, ReasonCode, TradingError

STRATEGY = "dual_ma_demo"
LOGGER = f"rqa.{STRATEGY}"
SIGNALS_LOGGER = f"{LOGGER}.signals"
# The demo shows sampling at work: signal records beyond 20 a second are
# suppressed, and a summary record counts them.
SAMPLING_RULES = [{"logger": SIGNALS_LOGGER, "level": "INFO", "rate_per_s": 20}]
TEXT_LOG = "demo.log"
# Halfway through, the demo tightens that rule in its settings file; the
# file watcher reloads it while the backtest runs (a live settings change).
SETTINGS_FILE = "demo-settings.yaml"
LIVE_RATE_PER_S = 2
# With --influxdb: the Collector's default plus the quant attributes, so that
# trade events can be selected by strategy and symbol with InfluxQL.
INFLUX_LOG_RECORD_DIMENSIONS = ["service.name", "rqa.strategy", "rqa.stock"]
# (symbol, first close, annual drift, annual volatility)
UNIVERSE: tuple[tuple[str, float, float, float], ...] = (
    ("600519.SH", 1700.0, 0.06, 0.28),
    ("000001.SZ", 11.0, 0.02, 0.30),
    ("300750.SZ", 200.0, 0.10, 0.45),
)
TRADING_DAYS_PER_YEAR = 252
LOT = 100  # A-share orders are in lots of 100 shares
COMMISSION = 0.0003


MINUTES_PER_DAY = 240  # 09:30-11:30 and 13:00-15:00
TRAILING_STOP = 0.08
EMA_ALPHA = 2 / (30 + 1)  # 30-minute intraday EMA
OPENING_MINUTES = 30  # orders fill at the VWAP of the first half hour


@dataclass(frozen=True)
class Bar:
    """One trading day: each stock's minute prices and volumes."""

    day: dt.date
    minutes: dict[str, tuple[list[float], list[int]]]

    @property
    def closes(self) -> dict[str, float]:
        return {symbol: prices[-1] for symbol, (prices, _) in self.minutes.items()}


@dataclass
class BacktestResult:
    run_id: str
    bars: int
    first_day: dt.date
    last_day: dt.date
    signals: Counter = field(default_factory=Counter)
    trades: int = 0
    start_value: float = 0.0
    final_value: float = 0.0
    elapsed_s: float = 0.0
    orders_rejected: int = 0
    """Orders the broker rejected once and the retry got through."""
    orders_refused: int = 0
    """Orders beyond the cash (InsufficientFunds), not retried."""


def trading_days(start: dt.date, count: int) -> Iterator[dt.date]:
    day = start
    while count:
        if day.weekday() < 5:
            yield day
            count -= 1
        day += dt.timedelta(days=1)


def synthetic_bars(years: int = 2, seed: int = 7, universe=UNIVERSE) -> list[Bar]:
    """Minute prices from geometric Brownian motion; the same for the same seed."""
    rng = random.Random(seed)
    step = 1.0 / (TRADING_DAYS_PER_YEAR * MINUTES_PER_DAY)
    last = {symbol: first for symbol, first, _, _ in universe}
    bars = []
    for day in trading_days(dt.date(2024, 1, 2), years * TRADING_DAYS_PER_YEAR):
        minutes = {}
        for symbol, _, drift, vol in universe:
            mu, sigma = (drift - vol * vol / 2) * step, vol * math.sqrt(step)
            price, prices, volumes = last[symbol], [], []
            for _ in range(MINUTES_PER_DAY):
                price *= math.exp(mu + sigma * rng.gauss(0.0, 1.0))
                prices.append(round(price, 2))
                volumes.append(rng.randrange(1, 50) * LOT)
            last[symbol] = price
            minutes[symbol] = (prices, volumes)
        bars.append(Bar(day, minutes))
    return bars


class DualMovingAverage:
    """BUY when the fast average of closes crosses above the slow one, SELL on the way down."""

    def __init__(self, fast: int = 10, slow: int = 40) -> None:
        self.fast, self.slow = fast, slow
        self._windows: dict[str, deque[float]] = {}
        self._above: dict[str, bool] = {}

    def signal(self, symbol: str, close: float) -> str:
        window = self._windows.setdefault(symbol, deque(maxlen=self.slow))
        window.append(close)
        if len(window) < self.slow:
            return "HOLD"
        prices = list(window)
        above = sum(prices[-self.fast :]) / self.fast > sum(prices) / self.slow
        previous = self._above.get(symbol)
        self._above[symbol] = above
        if previous is None or previous == above:
            return "HOLD"
        return "BUY" if above else "SELL"


class SimulatedBroker:
    """Fills orders at the price given, as a broker would, and fails as one does.

    - an order the cash cannot pay for raises ``InsufficientFunds`` (not
      retried; a critical alert);
    - every ``reject_every``-th order is rejected once (price out of the
      daily limit) and goes through on the retry.

    So that the insufficient-funds path shows in the demo's telemetry (the
    dashboards and alert rules under grafana/ read it), the strategy's first
    order is a drill: ten times too large (a misplaced zero), refused, then resized.
    """

    def __init__(self, reject_every: int = 7) -> None:
        self.reject_every = reject_every
        self.orders = 0
        self.refused = 0
        self._rejected: set[int] = set()

    @property
    def rejected(self) -> int:
        return len(self._rejected)

    def submit(self, symbol: str, quantity: int, price: float, cash: float) -> None:
        cost = quantity * price * (1 + COMMISSION)
        if quantity > 0 and cost > cash:
            self.refused += 1
            raise InsufficientFunds(
                f"buy {quantity} {symbol} needs {cost:,.2f} CNY, {cash:,.2f} available",
                strategy=STRATEGY, symbol=symbol, required=round(cost, 2), available=round(cash, 2),
            )
        self.orders += 1
        if self.orders % self.reject_every == 0 and self.orders not in self._rejected:
            self._rejected.add(self.orders)
            self.orders -= 1  # the retry is the same order
            raise OrderRejected(
                f"{symbol} @ {price:.2f} outside the daily price limit", strategy=STRATEGY, symbol=symbol,
                reason=ReasonCode.PRICE_OUT_OF_LIMIT,
            )


def run_backtest(
    bars: Sequence[Bar],
    monitor=None,
    cash: float = 1_000_000.0,
    progress: Callable[[int, int], None] | None = None,
    errors=None,
) -> BacktestResult:
    """Run the strategy over ``bars``, reporting trades and the portfolio to
    ``monitor`` (a BacktestMonitor; None runs the same backtest with
    telemetry off) and signals through stdlib logging.

    Every minute of every stock is processed, as an intraday backtest does:
    an intraday EMA, the running VWAP, a trailing stop and the fill of orders
    decided at the previous close (A-shares settle T+1; orders fill at the
    VWAP of the first half hour). Signals come from daily closes.

    Telemetry follows what a production strategy sends: INFO records for
    signals that act, DEBUG for HOLD, a trade event and counters per fill,
    and a portfolio snapshot at each month end. Orders go through a
    ``SimulatedBroker``; ``errors`` (a TradingErrorHandler; None: the same
    retries, unreported) retries and reports its failures.
    """
    monitor = monitor or _NoMonitor()
    errors = errors or _NoErrorHandler()
    broker = SimulatedBroker()
    submit = errors.with_retry(strategy=STRATEGY)(broker.submit)
    drill_pending = True
    signals_log = logging.getLogger(SIGNALS_LOGGER)
    strategy = DualMovingAverage()
    symbols = list(bars[0].minutes)
    positions = {symbol: 0 for symbol in symbols}
    peaks = {symbol: 0.0 for symbol in symbols}
    emas: dict[str, float] = {}
    pending: dict[str, str] = {}  # symbol -> signal decided at the previous close
    result = BacktestResult("", len(bars), bars[0].day, bars[-1].day, start_value=cash)
    result.final_value = cash
    started = time.perf_counter()
    parameters = {"fast": strategy.fast, "slow": strategy.slow, "trailing_stop": TRAILING_STOP}

    with monitor.run(STRATEGY, parameters) as run_id:
        result.run_id = run_id

        def fill(bar: Bar, symbol: str, quantity: int, price: float) -> None:
            nonlocal cash, drill_pending
            if drill_pending and quantity > 0:
                drill_pending = False
                try:
                    broker.submit(symbol, quantity * 10, price, cash)
                except TradingError as error:  # InsufficientFunds: reported, then resized
                    errors.handle(error, strategy=STRATEGY)
            submit(symbol, quantity, price, cash)
            notional = abs(quantity) * price
            cash -= quantity * price + notional * COMMISSION
            positions[symbol] += quantity
            peaks[symbol] = price
            result.trades += 1
            side = "buy" if quantity > 0 else "sell"
            monitor.record_trade(symbol, side, price, abs(quantity), STRATEGY, timestamp=_close(bar.day))

        for index, bar in enumerate(bars):
            equity = cash + sum(positions[s] * bar.minutes[s][0][0] for s in symbols)
            for symbol in symbols:
                prices, volumes = bar.minutes[symbol]
                order = pending.pop(symbol, "HOLD")
                ema = emas.get(symbol, prices[0])
                traded = volume_sum = 0.0
                for minute, (price, volume) in enumerate(zip(prices, volumes)):
                    traded += price * volume
                    volume_sum += volume
                    ema += EMA_ALPHA * (price - ema)
                    if minute == OPENING_MINUTES - 1 and order != "HOLD":
                        vwap = traded / volume_sum
                        quantity = _order_quantity(order, positions[symbol], equity / len(symbols), vwap)
                        if quantity:
                            fill(bar, symbol, quantity, vwap)
                    if positions[symbol] > 0:
                        if price > peaks[symbol]:
                            peaks[symbol] = price
                        elif price < peaks[symbol] * (1 - TRAILING_STOP) and ema < peaks[symbol]:
                            fill(bar, symbol, -positions[symbol], price)
                emas[symbol] = ema

            for symbol, close in bar.closes.items():
                signal = strategy.signal(symbol, close)
                result.signals[signal] += 1
                level = logging.DEBUG if signal == "HOLD" else logging.INFO
                signals_log.log(
                    level, "%s %s close=%.2f", signal, symbol, close,
                    extra={"stock": symbol, "strategy": STRATEGY, "signal": signal},
                )
                if signal != "HOLD":
                    pending[symbol] = signal

            result.final_value = cash + sum(positions[s] * bar.closes[s] for s in symbols)
            if index + 1 == len(bars) or bars[index + 1].day.month != bar.day.month:
                monitor.record_portfolio(result.final_value, cash, positions, STRATEGY, timestamp=_close(bar.day))
            if progress:
                progress(index + 1, len(bars))
    result.elapsed_s = time.perf_counter() - started
    result.orders_rejected, result.orders_refused = broker.rejected, broker.refused
    return result


def _order_quantity(signal: str, held: int, budget: float, price: float) -> int:
    if signal == "BUY" and held == 0:
        return int(budget // (price * LOT)) * LOT
    if signal == "SELL" and held > 0:
        return -held
    return 0


def _close(day: dt.date) -> dt.datetime:
    """The A-share close, 15:00 China Standard Time."""
    return dt.datetime(day.year, day.month, day.day, 15, tzinfo=dt.timezone(dt.timedelta(hours=8)))


class _NoMonitor:
    """The same calls with telemetry off (the bench's anchor)."""

    @contextmanager
    def run(self, strategy, parameters=None):
        yield uuid.uuid4().hex

    def record_trade(self, *args, **kwargs) -> None:
        pass

    def record_portfolio(self, *args, **kwargs) -> None:
        pass


class _NoErrorHandler:
    """The same retries with telemetry off: the broker rejects an order once."""

    def with_retry(self, strategy=None):
        def decorate(function):
            def run(*args, **kwargs):
                for tries_left in (2, 1, 0):
                    try:
                        return function(*args, **kwargs)
                    except OrderRejected:
                        if not tries_left:
                            raise
            return run

        return decorate

    def handle(self, error, strategy=None) -> None:
        pass


def write_settings(path: str, rate_per_s: float) -> None:
    """The demo's settings file, saved as vim saves: a private temporary file
    renamed over the target."""
    import os

    text = (
        "logging:\n  sampling:\n    rules:\n"
        f"      - {{logger: {SIGNALS_LOGGER}, level: INFO, rate_per_s: {rate_per_s}}}\n"
    )
    temporary = f"{path}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


class LiveChange:
    """Saves the tightened sampling rule at the middle bar and notes when
    the reloaded settings reach the log handler."""

    def __init__(self, telemetry, path: str) -> None:
        self.path = path
        self.bar = 0
        self.saved_bar: int | None = None
        self._saved_at = 0.0
        self.applied: tuple[int, float] | None = None
        """(bar, milliseconds after the save) at which the new rule was applied."""
        self.waited_s = 0.0
        self._done = threading.Event()
        telemetry.live_settings.on_change("logging.sampling.rules", self._applied)

    def __call__(self, done: int, total: int) -> None:
        self.bar = done
        if self.saved_bar is None and done >= total // 2:
            self.saved_bar, self._saved_at = done, time.perf_counter()
            write_settings(self.path, LIVE_RATE_PER_S)
            # The whole backtest takes about as long as a reload: wait for
            # it here (at most 2 s), so the second half runs under the new
            # rule. The wait is left out of the reported wall time.
            self._done.wait(2.0)
            self.waited_s = time.perf_counter() - self._saved_at

    def _applied(self, key, old, new) -> None:
        self.applied = (self.bar, (time.perf_counter() - self._saved_at) * 1000)
        self._done.set()


class Progress:
    """Progress on stderr: a live line on a terminal, a line per quarter otherwise."""

    def __init__(self, stream=sys.stderr, enabled: bool = True) -> None:
        self.stream, self.enabled = stream, enabled
        self.live = enabled and stream.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        percent = done * 100 // total
        step = percent if self.live else percent // 25 * 25
        if step == self._last:
            return
        self._last = step
        line = f"backtest: bar {done}/{total} ({percent}%)"
        if self.live:
            self.stream.write("\r" + line + ("\n" if done == total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def resource_summary(snapshot) -> dict[str, dict]:
    """Per-strategy figures of a :class:`~rqa_otel.resources.ResourceSnapshot`,
    as the ``rqa.strategy.*`` gauges export them."""
    return {
        strategy: {
            "processes": usage.processes,
            "cpu_percent": round(usage.cpu_percent, 1),
            "rss_bytes": usage.rss_bytes,
            "threads": usage.threads,
            "open_fds": usage.open_fds,
            "gpu_memory_bytes": usage.gpu_memory_bytes,
        }
        for strategy, usage in snapshot.usage.items()
    }


def resource_lines(resources: dict[str, dict]) -> list[str]:
    lines = []
    for strategy, usage in sorted(resources.items()):
        gpu = "" if usage["gpu_memory_bytes"] is None else f", GPU {usage['gpu_memory_bytes'] / 2**20:.1f} MiB"
        lines.append(
            f"  resources: {strategy}: {usage['processes']} process(es), CPU {usage['cpu_percent']:.0f}% of a core, "
            f"RSS {usage['rss_bytes'] / 2**20:.1f} MiB, {usage['threads']} threads, {usage['open_fds']} open fds{gpu} "
            "(gauges rqa.strategy.*)"
        )
    return lines


DEMO_MEMORY_QUOTA_MIB = 16  # far below any Python process's RSS: the demo's breach is certain
# The other quotas are for the strategy resources dashboard to show: a GPU
# memory quota (usage only where NVML answers), CPU at the whole machine (never
# breached) and max_workers, with the demo registered as one worker.
DEMO_GPU_MEMORY_QUOTA_MIB = 1024
DEMO_MAX_WORKERS = 2


def demo_quota() -> dict:
    """The demo strategy's quota: a memory limit it cannot meet."""
    return {"memory_mib": DEMO_MEMORY_QUOTA_MIB, "gpu_memory_mib": DEMO_GPU_MEMORY_QUOTA_MIB,
            "cpu_percent": 100 * (os.cpu_count() or 1), "max_workers": DEMO_MAX_WORKERS}


def quota_breach(telemetry, snapshot, run_dir: str) -> dict | None:
    """Check the demo strategy's usage against a memory quota it cannot
    meet, as the host agent does each collection: the breach becomes one
    ``quota_breach`` alert span. ``run_dir`` keeps this quota out of the
    host's real run directory."""
    manager = ResourceManager(telemetry, registry=Registry(run_dir), quotas={STRATEGY: demo_quota()})
    # This process, until it exits (a dead worker no longer counts).
    manager.register_strategy_worker(STRATEGY, "backtest")
    for change in manager.observe(snapshot.usage):
        if change.level == "breach" and change.resource == "memory":
            return {"strategy": change.strategy, "resource": change.resource, "smoothed_mib": round(change.value, 1),
                    "quota_mib": change.limit, "episode_id": change.episode_id}
    return None


def quota_line(alert: dict) -> str:
    return (
        f"  quota: {alert['strategy']} memory {alert['smoothed_mib']:.1f} MiB (smoothed) > quota "
        f"{alert['quota_mib']:g} MiB -> alert quota_breach, episode {alert['episode_id']} (an rqa.alert span)"
    )
