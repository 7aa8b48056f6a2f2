"""The design's trading names: BacktestMonitor(app_name), the TradingError
enum, the *Error exception names and TradingErrorHandler() with its
handle_* methods.

    monitor = BacktestMonitor("rqa2025_backtest")      # the process's telemetry, set up if needed
    monitor.record_trade("600519.SH", "buy", 1688.5, 100, "dual_ma")
    monitor.get_trade_history(strategy="dual_ma")[0]["tags"]["action"]   # "BUY"

    handler = TradingErrorHandler()
    handler.handle_insufficient_funds(InsufficientFundsError("need cash", strategy="dual_ma",
                                                             required=1e6, available=2e5))  # alert, None
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any, Callable

from rqa_otel import names
from rqa_otel.rqa2025.handle import global_telemetry
from rqa_otel.trading import errors as _errors
from rqa_otel.trading.monitor import BacktestMonitor as _ProjectBacktestMonitor
from rqa_otel.trading.retry import RetryHandler

_log = logging.getLogger("rqa_otel.trading_errors")


class TradingError(enum.Enum):
    """The design's error kinds (the keys of ``retry_strategy``). The
    exception classes are the project's; this enum only names them."""

    ORDER_REJECTED = 1
    INSUFFICIENT_FUNDS = 2
    POSITION_LIMIT = 3
    CONNECTION_ERROR = 4


# The design's exception names, as aliases of the project's classes: an
# OrderRejectedError IS an rqa_otel.trading.OrderRejected.
OrderRejectedError = _errors.OrderRejected
InsufficientFundsError = _errors.InsufficientFunds
PositionLimitError = _errors.PositionLimit
BrokerConnectionError = _errors.BrokerConnection

ERROR_CLASSES = {
    TradingError.ORDER_REJECTED: OrderRejectedError,
    TradingError.INSUFFICIENT_FUNDS: InsufficientFundsError,
    TradingError.POSITION_LIMIT: PositionLimitError,
    TradingError.CONNECTION_ERROR: BrokerConnectionError,
}


class BacktestMonitor(_ProjectBacktestMonitor):
    def __init__(self, app_name: str = "rqa2025_backtest", telemetry: Any = None, **options: Any) -> None:
        """The design's ``BacktestMonitor(app_name)``: reports through
        ``telemetry``, by default the process's handle, set up now (with
        ``service.name`` = ``app_name``) when there is none. ``options``: the
        project's (journal_path, series_limit, commit_interval_s)."""
        if not isinstance(app_name, str) or not app_name.strip():
            raise ValueError(f"app_name {app_name!r}: expected a non-empty string")
        self.app_name = app_name
        super().__init__(telemetry if telemetry is not None else global_telemetry(app_name), **options)


class TradingErrorHandler(_errors.TradingErrorHandler):
    """The design's handler: ``TradingErrorHandler()`` reports through the
    process's telemetry; its four handlers are registered for the four
    exception classes, and ``retry_strategy`` holds the design's
    (retries, delay in seconds) for rejected orders and lost connections."""

    def __init__(self, telemetry: Any = None, policies: Any = None, sleep: Callable[[float], Any] = time.sleep) -> None:
        telemetry = telemetry if telemetry is not None else global_telemetry()
        super().__init__(telemetry, policies, sleep)
        self.retry_handler = RetryHandler(telemetry, sleep=sleep)
        self.retry_strategy: dict[TradingError, tuple[int, float]] = {
            TradingError.ORDER_REJECTED: (3, 5.0),
            TradingError.CONNECTION_ERROR: (5, 10.0),
        }
        self.register_handler(OrderRejectedError, self.handle_order_reject)
        self.register_handler(InsufficientFundsError, self.handle_insufficient_funds)
        self.register_handler(PositionLimitError, self.handle_position_limit)
        self.register_handler(BrokerConnectionError, self.handle_connection_error)

    def handle_order_reject(self, e: OrderRejectedError) -> Any:
        """Retry ``e.retry_action()`` (set it on the error, or subclass)
        with ``retry_strategy[ORDER_REJECTED]``; its result, or the last
        OrderRejectedError once the retries are spent. Without a
        retry_action there is nothing to retry: a warning alert, None."""
        return self._retry(e, "retry_action", TradingError.ORDER_REJECTED, OrderRejectedError)

    def handle_connection_error(self, e: BrokerConnectionError) -> Any:
        """Retry ``e.reconnect()`` with ``retry_strategy[CONNECTION_ERROR]``,
        as handle_order_reject does."""
        return self._retry(e, "reconnect", TradingError.CONNECTION_ERROR, BrokerConnectionError)

    def handle_insufficient_funds(self, e: InsufficientFundsError) -> None:
        """A critical alert naming the strategy, the cash required and available; None."""
        _log.critical("Insufficient funds: %s", e)
        self._send_alert("critical", {
            "message": f"Insufficient funds in strategy {e.strategy}",
            "required": e.required, "available": e.available,
        }, e)
        return None

    def handle_position_limit(self, e: PositionLimitError) -> None:
        """A warning alert naming the symbol, the position and its limit; None."""
        _log.warning("Position limit reached: %s", e)
        self._send_alert("warning", {
            "message": f"Position limit reached for {e.symbol}", "current": e.current, "limit": e.limit,
        }, e)
        return None

    def _retry(self, e: BaseException, method: str, kind: TradingError, retried: type) -> Any:
        action = getattr(e, method, None)
        if not callable(action):
            self._send_alert("warning", {"message": f"{type(e).__name__} has no {method}() to retry: {e}"}, e)
            return None
        retries, delay = self.retry_strategy[kind]

        @self.retry_handler.with_retry(max_retries=retries, retry_delay=delay, retry_exceptions=[retried])
        def retry_action():
            return action()

        return retry_action()

    def _send_alert(self, level: str, payload: dict, error: BaseException | None = None) -> None:
        """The design's alert: one alert-tagged span named after the error."""
        name = getattr(error, "alert_name", None) or names.ALERT_TRADING_ERROR
        attributes = error.attributes() if isinstance(error, _errors.TradingError) else {}
        strategy = getattr(error, "strategy", None)
        self._telemetry.alert(name, level, strategy=strategy, message=str(payload.get("message", "")),
                              attributes=attributes)


__all__ = [
    "BacktestMonitor",
    "BrokerConnectionError",
    "InsufficientFundsError",
    "OrderRejectedError",
    "PositionLimitError",
    "TradingError",
    "TradingErrorHandler",
]
